"""Keeping secrets and contact details out of what the project prints or records.

- :func:`redact_secrets`: passwords in URLs (``postgresql://user:PASSWORD@host``) and the values of
  environment variables whose names say they are secret, replaced by ``***``; used on every error
  the `crm` command prints and on everything a snapshot records about a run.
- :func:`mask_contact_details`: email addresses in free text masked the way the dashboard masks
  them (``j***@example.com``); used on check metadata (Great Expectations' examples of unexpected
  values) before it reaches Dagster's event log or a snapshot.
"""

from __future__ import annotations

import os
import re

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?P<tail>@)")
# pydantic shortens long values in its messages ('postgresql://u...-xyz@db'): the tail before '@' may
# still be part of the password.
_TRUNCATED_CREDENTIALS = re.compile(r"\.\.\.[^\s'\"/@]+@")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL|ERASURE_KEY", re.I)
_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})")
# Column names whose values identify a person: examples of their values are never recorded.
PERSON_FIELD = re.compile(r"email|phone|name|postcode|address|birth|customer_ref|source_key|record_key", re.I)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    return sorted(
        {value for name, value in environ.items() if _SECRET_NAME.search(name) and len(value) >= 6},
        key=len,
        reverse=True,
    )


def redact_secrets(text: str, environ: dict[str, str] | None = None) -> str:
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    text = _TRUNCATED_CREDENTIALS.sub("...***@", text)
    for value in secret_values(environ):
        text = text.replace(value, "***")
    return text


def mask_contact_details(text: str) -> str:
    return _EMAIL.sub(r"\1***@\2", text) if text else text


def safe_examples(column: str | None, examples: list) -> list:
    """Examples of unexpected values that may be recorded: none for a column that identifies a person."""
    if column and PERSON_FIELD.search(column):
        return [f"<{len(examples)} value(s) withheld: {column} identifies a person>"] if examples else []
    return [mask_contact_details(str(v)) for v in examples]
