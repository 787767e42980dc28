"""The Qt application. Importing this package does not import Qt; the
window modules do."""
