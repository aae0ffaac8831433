"""The report form's questionnaire, shared by the server and the staff CLI: the operator-editable
data file and its translations (shipped here), their validation, and triage computed from the
answers. Imports the standard library only."""

from .errors import QuestionnaireError
from .format import (
    DEFAULT_ID,
    DEFAULT_QUESTIONNAIRE,
    Option,
    Question,
    Questionnaire,
    Section,
    load_file,
    load_questionnaire,
    parse_questionnaire,
)
from .triage import Triage, assess_answers, triage

__all__ = [
    "DEFAULT_ID",
    "DEFAULT_QUESTIONNAIRE",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "Section",
    "Triage",
    "assess_answers",
    "load_file",
    "load_questionnaire",
    "parse_questionnaire",
    "triage",
]
