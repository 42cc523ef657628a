"""Security and privacy: who may see what (roles, the viewer, row-level scope), the local users
file, the suppression list of erased persons, erasure itself, and keeping secrets out of output.

Plain Python (no Streamlit, no Dagster): the app's data layer, the `crm` command and ingestion
all call it, so a rule is written once.
"""
