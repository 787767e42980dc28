"""The bundled evaluation data: news articles and film reviews, read from the
files that data packages carry, with fixed splits that never overlap.

See README.md, "Evaluation data and protocols", for sources, licences and
sizes.
"""
