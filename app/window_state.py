"""What the window remembers between sessions: geometry, splitter positions,
the current tab, and the compression panel's last recipe with its Run on
backend. Kept in QSettings (organisation "CompressionWorkbench", application
"workbench"); the window takes the settings object from its caller, so tests
hand it a file of their own and never read the user's."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "CompressionWorkbench"
APPLICATION = "workbench"
DEFAULT_SIZE = (1280, 820)


def user_settings() -> QSettings:
    """The user's settings (the platform's usual place)."""
    return QSettings(ORGANISATION, APPLICATION)


def save_state(settings: QSettings, window, splitters: dict, tabs, panel) -> None:
    settings.setValue("window/geometry", window.saveGeometry())
    for name, splitter in splitters.items():
        settings.setValue(f"splitters/{name}", splitter.saveState())
    settings.setValue("window/tab", tabs.currentIndex())
    try:
        settings.setValue("recipe/json", panel.recipe().to_json())
    except ValueError:  # a half-typed scope: the last valid recipe stays saved
        pass
    settings.setValue("recipe/backend", panel.chosen_backend())
    settings.sync()


def restore_state(settings: QSettings, window, splitters: dict, tabs, panel) -> list[str]:
    """Put back what ``save_state`` kept; returns notices for what could not be
    (a recipe this build no longer reads). Nothing kept: the default size."""
    notices = []
    geometry = settings.value("window/geometry")
    if not isinstance(geometry, QByteArray) or not window.restoreGeometry(geometry):
        window.resize(*DEFAULT_SIZE)  # nothing kept, or a hand-edited value
        if geometry is not None:
            notices.append("The last session's window size was not restored (not a saved size).")
    for name, splitter in splitters.items():
        state = settings.value(f"splitters/{name}")
        if state is not None and not (
            isinstance(state, QByteArray) and splitter.restoreState(state)
        ):
            notices.append(f"The last session's {name} panel sizes were not restored.")
    tab = _int(settings.value("window/tab"))
    if tab is not None and 0 <= tab < tabs.count():
        tabs.setCurrentIndex(tab)
    return notices + _restore_recipe(settings, panel)


def _restore_recipe(settings: QSettings, panel) -> list[str]:
    from core.passes.recipe import Recipe, validate

    text = settings.value("recipe/json")
    if not text:
        return []
    backend = settings.value("recipe/backend")
    try:
        recipe = Recipe.from_json(str(text))
        validate(recipe)
        panel.set_recipe(recipe)
        if panel.recipe() != recipe:  # a value the controls cannot show
            raise ValueError("the controls cannot show it")
    # Settings files hold whatever an older build (or a hand edit) wrote: any
    # failure means "start with no recipe", never a crash at start.
    except Exception as err:  # noqa: BLE001
        from core.passes.recipe import Recipe

        panel.set_recipe(Recipe())
        return [f"The last session's recipe was not restored ({_first_line(err)})."]
    if backend:
        panel.set_backend(str(backend))
    return []


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
