"""The onboarding screens: the language chooser, the consent question (then the consent with the
welcome under it), and the question before withdrawing consent. A step reached by a button is
edited into the message that button was on."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue, catalogue
from bots.messages.replies import EditText, SendText
from core.vocabulary import LANGUAGES


def language_choice(t: Catalogue) -> SendText:
    """Every game language, each named in itself."""
    return SendText(t("choose_language"), [[(catalogue(language).language_name(language),
                                             callbacks.ChooseLanguage(language).encode()) for language in LANGUAGES]])


def consent(t: Catalogue, edit: int | None = None) -> EditText | SendText:
    buttons = [[(t("button_agree"), callbacks.GiveConsent().encode())]]
    return EditText(edit, t("consent"), buttons) if edit is not None else SendText(t("consent"), buttons)


def welcome(t: Catalogue, edit: int | None = None) -> EditText | SendText:
    return EditText(edit, f"{t('consent')}\n\n✅ {t('welcome')}") if edit is not None else SendText(t("welcome"))


def language_set(t: Catalogue, edit: int) -> EditText:
    return EditText(edit, t("language_set"))


def forget_question(t: Catalogue) -> SendText:
    return SendText(t("forget_confirm"), [[(t("button_forget_yes"), callbacks.ForgetAnswer("yes").encode()),
                                           (t("button_forget_no"), callbacks.ForgetAnswer("no").encode())]])


def forget_answered(t: Catalogue, forgotten: bool, edit: int | None) -> EditText | SendText:
    text = t("forgotten" if forgotten else "forget_cancelled")
    return EditText(edit, text) if edit is not None else SendText(text)
