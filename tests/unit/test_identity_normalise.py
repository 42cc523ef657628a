"""Normalisation used by identity resolution and the golden record."""

import polars as pl
import pytest

from crm.identity import normalise as norm


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" Ann.Lee@Example.com ", "ann.lee@example.com"),
        ("mailto:<BOB@acme.co.uk>", "bob@acme.co.uk"),
        ("not an email", None),
        ("ann@", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_email(raw, expected):
    assert norm.normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("020 7946 0018", "+442079460018"),
        ("+44 20 7946 0018", "+442079460018"),
        ("(020) 7946-0018", "+442079460018"),
        ("0044 20 7946 0018", "+442079460018"),
        ("+44 (0)20 7946 0018", "+442079460018"),
        ("07700 900123", "+447700900123"),
        ("+1 202 555 0147", "+12025550147"),
        ("12", None),
        ("call me", None),
        (None, None),
    ],
)
def test_normalise_phone_to_e164(raw, expected):
    assert norm.normalise_phone(raw, "GB") == expected


def test_phones_to_e164_vectorised_matches_scalar():
    raw = pl.Series("phone", ["020 7946 0018", None, "+44 20 7946 0018", "x", "07700 900123"])
    out = norm.phones_to_e164(raw, "GB")
    assert out.to_list() == ["+442079460018", None, "+442079460018", None, "+447700900123"]


def test_names_and_postcodes():
    assert norm.display_name("  ann   LEE ") == "Ann Lee"
    assert norm.display_name("ANNE-MARIE") == "Anne-Marie"
    assert norm.display_name("McDonald") == "McDonald"  # mixed case is kept as written
    assert norm.name_key(" Zoë ") == "zoe"
    assert norm.split_full_name("Ann Lee") == ("Ann", "Lee")
    assert norm.split_full_name("Lee, Ann") == ("Ann", "Lee")
    assert norm.split_full_name("Mary Ann Lee") == ("Mary Ann", "Lee")
    assert norm.split_full_name("Madonna") == (None, "Madonna")
    assert norm.postcode_key("sw1a 1aa") == "SW1A1AA"
    assert norm.display_postcode("sw1a1aa") == "SW1A 1AA"
    assert norm.email_local_part("ann.lee+news@example.com") == "annlee"


def test_vectorised_email_features_match_the_scalar_helpers():
    raw = [
        " Ann.Lee+news@Example.com ",
        "mailto:<BOB@acme.co.uk>",
        "info@acme.co.uk",
        "peter.shaw69@example.org",
        "not an email",
        None,
        "j_o.e@x.io",
    ]
    out = pl.DataFrame({"e": raw}, schema={"e": pl.Utf8}).select(**norm.email_features(pl.col("e")))
    for i, value in enumerate(raw):
        email = norm.normalise_email(value)
        assert out["email"][i] == email
        assert out["email_local"][i] == norm.email_local_part(email)
        assert out["email_domain"][i] == norm.email_domain(email)
        assert out["email_local_letters"][i] == norm.email_local_letters(email)
        assert out["email_signature"][i] == norm.email_signature(email)
        assert out["email_match"][i] == norm.non_role_email(email)


def test_vectorised_phone_skeleton_matches_scalar():
    raw = ["020 7946 0018", "+44 (0)20 7946-0018", "0044 20 7946 0018", "12", "", None, "+1+202 555 0147", "call me"]
    out = pl.DataFrame({"p": raw}, schema={"p": pl.Utf8}).select(s=norm.phone_skeleton_expr(pl.col("p")))["s"]
    assert out.to_list() == [norm.phone_skeleton(v) for v in raw]
