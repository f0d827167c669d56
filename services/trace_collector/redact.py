"""Removing personal data and secrets from traces before the collector stores them.

What is found, by kind (the label of `interns_pii_redacted_total` and of the placeholder):

- `email`: addresses, anywhere in the text.
- `phone`: numbers that Google's libphonenumber (`phonenumbers`) calls valid: international
  ones written with `+` or `00`, and national ones of the default region (US unless
  configured), in the usual groupings (`408-247-8880`, `(415) 567-5432`, `+44 20 7946 0958`).
- `card`: 13 to 19 digits, contiguous or grouped by spaces or dashes, that pass the Luhn
  check and start like a payment card (2 to 6): a 16-digit number failing Luhn is no card.
- `iban`: IBANs whose country format and mod-97 check digits are right (`python-stdnum`).
- `national_id`: US social security numbers in `123-45-6789` or `123 45 6789` form (or nine
  bare digits after "SSN" or "social security"), within the valid ranges (no 000, 666 or
  9xx area, no 00 group, no 0000 serial); UK National Insurance numbers; Indian Aadhaar
  numbers grouped 4-4-4 (Verhoeff check); Spanish DNI and NIE (check letter).
- `ip`: IPv4 and IPv6 addresses.
- `secret`: keys and tokens with a known shape (OpenAI `sk-`, Anthropic `sk-ant-`, GitHub
  `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`/`github_pat_`, Slack `xox?-`/`xapp-`, AWS `AKIA...`,
  Google `AIza...`, Stripe `sk_live_`/`rk_live_` (and `_test_`), GitLab `glpat-`, Hugging
  Face `hf_`, npm `npm_`, JWTs, our own `ik_` keys), PEM private keys, passwords in URLs,
  the value after "password", "secret", "token", "api key" and their kin (`password: ...`,
  `api_key=...`, `"token": "..."` in JSON), `Bearer` tokens, and long random-looking
  tokens (see `_looks_random`).

What is not found: names, street addresses, dates of birth and other data that only a
language model can tell from context (none can be loaded here); phone numbers written
without a country code in another region's national format (`020 7946 0958`); local
numbers without an area code; identifiers made only of hex digits (UUIDs, hashes, trace
ids are ids, not secrets, unless they follow a secret's keyword).

Each value found is replaced by a placeholder naming its kind and a keyed hash of the
value: `<EMAIL_1f3a9c0b>`. The hash is HMAC-SHA256 over the tenant, the kind and the value
in a normal form (an email in lower case, a phone number in E.164, a card's digits), under
the collector's redaction key. So the same value gets the same placeholder in every trace of
a tenant, whichever collector instance stores it and after any restart, with no shared
counter to keep (a numbered `<EMAIL_1>` would need one, in the database, on the hot path);
and a tenant's placeholders say nothing about another tenant's. Eight hex digits keep
collisions rare (two distinct values of one tenant share a placeholder with probability
about n^2 / 2^33: some ten pairs among 300,000 emails) while the text stays short. The key
must be secret: with it, anyone can test a guess (a phone number has few possibilities)
against a placeholder.

Speed: the collector redacts every trace, so the cheap questions come first. The texts of
a trace are joined and scanned once by a few patterns that Python's `re` runs fast (runs of
digits, `@`, `://`, keywords in lower case, long unbroken chunks); the precise patterns,
checksums and phone-number parsing run only on the small windows those find. And a text
seen before (every call of a session carries the messages before it) is not scanned again:
`redact_texts` remembers what it found in the last texts it scanned.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import math
import re
import string
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat
from stdnum import ean, luhn
from stdnum import iban as stdnum_iban
from stdnum.es import dni, nie
from stdnum.in_ import aadhaar
from stdnum.us import ssn

from interns.common.events import MessageRecord, TraceRecorded
from interns.common.metrics import PII_REDACTED
from interns.trace_collector.wire import MessageWire, TraceWire

# A trace as the collector holds it: validated by pydantic, or by the fast path (`wire`).
AnyTrace = TraceRecorded | TraceWire

EMAIL = "email"
PHONE = "phone"
CARD = "card"
IBAN = "iban"
NATIONAL_ID = "national_id"
IP = "ip"
SECRET = "secret"
# A value found by two detectors keeps the kind that comes first here.
KINDS = (SECRET, EMAIL, IBAN, CARD, NATIONAL_ID, IP, PHONE)
_PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}

PLACEHOLDER = re.compile(rf"<(?:{'|'.join(kind.upper() for kind in KINDS)})_[0-9a-f]{{8}}>")
# Joins a trace's texts for one scan. No pattern below crosses a NUL, and the newlines
# end every whitespace-separated chunk at the joint.
_JOINT = "\n\x00\n"


@dataclass(frozen=True, slots=True)
class Finding:
    """A value found in a text: its span, its kind and its normal form (what is hashed).
    A `weak` finding (a random-looking token) yields to any other it overlaps."""

    start: int
    end: int
    kind: str
    value: str
    weak: bool = False


# --- patterns ----------------------------------------------------------------------------

_TOKEN_CHARS = r"A-Za-z0-9_\-"
_KNOWN_SECRET = re.compile(
    rf"(?<![{_TOKEN_CHARS}])(?:"
    rf"sk-(?=[{_TOKEN_CHARS}]*\d)[{_TOKEN_CHARS}]{{20,}}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abeoprs]-[A-Za-z0-9\-]{10,}"
    r"|xapp-[A-Za-z0-9\-]{10,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
    rf"|AIza[{_TOKEN_CHARS}]{{35}}"
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    rf"|eyJ[{_TOKEN_CHARS}]{{8,}}\.[{_TOKEN_CHARS}]{{8,}}\.[{_TOKEN_CHARS}]*"
    rf"|ik_[{_TOKEN_CHARS}]{{20,}}"
    rf"|glpat-[{_TOKEN_CHARS}]{{20,}}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    rf")(?![{_TOKEN_CHARS}])"
)
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    # A key cut short (no END line) is removed up to the end of its base64 body.
    r"(?:[^\x00]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s:,\\\-]*)"
)
_URL_PASSWORD = re.compile(r"://[^/\s:@\x00]+:([^/\s@\x00]+)@")
_SECRET_KEYWORDS = ("pass", "pwd", "secret", "token", "api", "bearer", "basic")
# The value ends at a space, a quote, a comma or the next parameter of a query string.
_KEYWORD_SECRET = re.compile(
    r"(?i)(?:pass(?:word|wd|phrase|code)?|pwd|secret(?:[_ -]?key)?|token|api[_ -]?key)"
    r"[\"']?\s*(?P<separator>[:=]|\bis\b)\s*[\"']?(?P<value>(?:[^\s\"'`,;&<>\x00]|&(?!\w+=)){4,})"
)
_BEARER = re.compile(r"(?i)(?:bearer|basic)\s+(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")
# A JSON value under one of these keys is a secret whatever it looks like.
_SECRET_JSON_KEY = re.compile(
    r"(?i)(?:password|passwd|pwd|passphrase|secret|token|api[_\-]?key|access[_\-]?key"
    r"|private[_\-]?key|authorization|credentials?)$"
)

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}(?![\w\-])"
)

# Runs of at least four digits with the separators numbers are written with: every
# number-shaped kind (cards, phones, national ids, IBANs, IPv4) contains one.
_DIGIT_RUN = re.compile(r"\d(?:[ \-.()]{0,3}\d){3,}")
# The same runs in ASCII text mapped by `_DIGIT_RUN_BYTES` (every digit a "9", the
# separators kept, anything else an "x"): a pattern that starts with one literal byte is
# searched for at C speed, where `\d` is tried at every position (a quarter of `find`).
_MAPPED_DIGIT_RUN = re.compile(rb"9(?:[ \-.()]{0,3}9){3,}")
_DIGIT_RUN_BYTES = bytes(
    ord("9") if chr(byte) in string.digits else byte if chr(byte) in " -.()" else ord("x")
    for byte in range(256)
)
_DROP_SEPARATORS = str.maketrans("", "", " -.()")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE = re.compile(r"(?<!\d)(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[.\-]\d{1,2}[.\-]\d{4})(?!\d)")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?!\w|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:])"
)
_CARD = re.compile(r"(?<![\d+\-.])\d(?:[ \-]?\d){12,18}(?![\d])")
# Cards are written contiguous, in groups of four, or 4-6-5 and 4-6-4 (Amex, Diners).
_CARD_GROUPS = re.compile(
    r"\d{13,19}|\d{4}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,4})?|\d{4}[ \-]\d{6}[ \-]\d{4,5}"
)
_NATIONAL_ID = re.compile(
    r"(?<![A-Za-z0-9\-])(?:"
    r"(?P<ssn>\d{3}(?P<sep>[ \-])\d{2}(?P=sep)\d{4})"
    r"|(?P<aadhaar>[2-9]\d{3}(?P<asep>[ \-])\d{4}(?P=asep)\d{4})"
    r"|(?P<nino>(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    r"|(?P<dni>\d{8}-?[A-Z])"
    r"|(?P<nie>[XYZ]-?\d{7}-?[A-Z])"
    r")(?![A-Za-z0-9]|-\d)"
)
# Digits in an SSN (9), an Aadhaar (12), a DNI (8), a NIE (7), a NINO (6).
_NATIONAL_ID_DIGITS = frozenset((6, 7, 8, 9, 12))
_SSN_CONTEXT = re.compile(r"(?i)(?:\bssn|social security|\bss#)\D{0,20}$")
_SSN_LOOKBACK = 40  # characters before bare digits searched for `_SSN_CONTEXT`
_NINE_DIGITS = re.compile(r"\d{9}")
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,30}")
_PHONE = re.compile(r"(?:(?:\+|(?<!\d)00)[ ]?)?\(?\d(?:[ \-.()]{0,3}\d){6,17}")
_PHONE_BEFORE = frozenset("_#@$/.-+")
_NANP_SHAPE = re.compile(r"(?:\+?1[ .\-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .\-])[2-9]\d\d[ .\-]\d{4}")
_EXTENSION = re.compile(r"(?i) ?(?:x|ext\.?|extension) ?\d{1,6}(?![\w])")

# Runs of token characters hold keys, known or random; runs of hex digits and colons hold
# IPv6 addresses. Both are found by mapping the text's bytes (C speed), not by a pattern.
_TOKEN_BYTES = bytes(
    ord("x") if chr(byte) in string.ascii_letters + string.digits + "+/=_-." else ord(" ")
    for byte in range(256)
)
_HEX_BYTES = bytes(
    ord("x") if chr(byte) in string.hexdigits + ":." else ord(" ") for byte in range(256)
)
# Letters as A, digits as 9, anything else as a space.
_SHAPE_BYTES = bytes(
    ord("A")
    if chr(byte) in string.ascii_letters
    else ord("9")
    if chr(byte) in string.digits
    else ord(" ")
    for byte in range(256)
)
_LONG_TOKEN = b"x" * 20
_LONG_HEX = b"x" * 15
_RANDOM_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{20,}={0,2}(?![A-Za-z0-9+/=_\-])")
_DIGIT = re.compile(r"\d")
_HEX_AND_DASHES = re.compile(r"[0-9A-Fa-f\-]+")
_WORD_PART = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{4,}")
_PLAIN_WORD = re.compile(r"[a-z]{3,}|[A-Za-z][a-z]{2,}")


def _entropy(text: str) -> float:
    """Shannon entropy of `text`, in bits per character."""
    length = len(text)
    return -sum(n / length * math.log2(n / length) for n in Counter(text).values())


def _looks_random(token: str) -> bool:
    """A long token that is probably a key: mixed characters, near the entropy of random
    base64 of its length, and not made of words.

    Random base64 of length n has an entropy just under log2(n) bits per character (fewer
    than n distinct characters, some repeated); 0.8 * log2(n), at most 3.6, lets through
    over 99.5% of random tokens from 20 characters up. Identifiers can be as varied
    ("MyVeryLongVariableName2024Final"), but their letters are words: in random tokens
    fewer than 85% of the letters fall in runs like "Very" or "name" (99.5% of them from
    20 characters up), in identifiers over 90%. Not keys by themselves: tokens without
    lower-case letters (booking references, VINs, tracking numbers: codes, not secrets),
    tokens of hex digits and dashes only (UUIDs, hashes, trace ids), paths (a token with
    `/` whose parts are mostly plain words, or that starts with `/` and a plain word).
    """
    body = token.rstrip("=")
    if body == body.upper() or not (body != body.lower() or _DIGIT.search(body)):
        return False
    if _HEX_AND_DASHES.fullmatch(body):
        return False
    if "/" in body:
        parts = [part for part in body.split("/") if part]
        plain = [bool(_PLAIN_WORD.fullmatch(part)) for part in parts]
        if 2 * sum(plain) > len(plain) or (body.startswith("/") and plain[:1] == [True]):
            return False
    if _entropy(body) < 0.8 * min(4.5, math.log2(len(body))):
        return False
    letters = sum(map(str.isalpha, body))
    wordy = sum(len(word) for word in _WORD_PART.findall(body))
    return wordy <= 0.85 * letters


@lru_cache(maxsize=65536)
def _phone_e164(candidate: str, region: str) -> str | None:
    """The E.164 form of `candidate` if it is a phone number: one libphonenumber calls
    valid (its range is assigned), or one of a possible length written the way only phone
    numbers are, with a `+` or as a North American `(NXX) NXX-XXXX`. Numbers
    in new or fictional ranges are still someone's.

    Cached: parsing costs about 30 us and the same numbers (a business's, a customer's)
    come back again and again."""
    shaped = candidate.startswith("+") or _NANP_SHAPE.fullmatch(candidate)
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) and not (
        shaped and phonenumbers.is_possible_number(number)
    ):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@lru_cache(maxsize=16384)
def _phones_matched(candidate: str, region: str) -> tuple[tuple[int, int, str], ...]:
    """The spans and E.164 forms of the numbers libphonenumber's matcher finds."""
    # The matcher knows a region's own international prefix (011 in the US), not "00".
    international = candidate.startswith("00")
    if international:
        candidate = " +" + candidate[2:]
    return tuple(
        (
            0 if international and match.start == 1 else match.start,
            match.end,
            phonenumbers.format_number(match.number, PhoneNumberFormat.E164),
        )
        for match in phonenumbers.PhoneNumberMatcher(candidate, region)
    )


def _group_ends(candidate: str) -> list[int]:
    """Where `candidate` could end before a trailing group (after a space), last first."""
    return [
        i
        for i in range(len(candidate) - 1, 0, -1)
        if candidate[i] == " " and candidate[i - 1].isdigit()
    ]


def _strip_trailing(value: str) -> str:
    """A value without the punctuation that ends its sentence or closes a bracket it is in."""
    value = value.rstrip(".:!?")
    while (
        value
        and value[-1] in ")]}"
        and value.count(value[-1]) > value.count("([{"[")]}".index(value[-1])])
    ):
        value = value[:-1].rstrip(".,:;")
    return value


def _card_digits(candidate: str) -> str | None:
    """The digits of a payment card: Luhn-valid, with an issuer's first digits (2 to 6, or
    JCB's 1800). Of 13 digits only an old Visa (4...) that is no EAN-13 barcode counts."""
    digits = candidate.translate(_DROP_SEPARATORS)
    if not (digits[0] in "23456" or digits.startswith("1800")):
        return None
    if len(digits) == 13 and (digits[0] != "4" or ean.is_valid(digits)):
        return None
    if not _CARD_GROUPS.fullmatch(candidate):
        return None
    return digits if luhn.is_valid(digits) else None


def _valid_national_id(match: re.Match) -> str | None:
    value = match.group()
    compact = re.sub(r"[ \-]", "", value).upper()
    if match.group("ssn"):
        return compact if ssn.is_valid(compact) else None
    if match.group("aadhaar"):
        return compact if aadhaar.is_valid(compact) else None
    if match.group("dni"):
        return compact if dni.is_valid(compact) else None
    if match.group("nie"):
        return compact if nie.is_valid(compact) else None
    return compact  # a NINO has no check digit: its letters are the check


def _valid_ipv6(candidate: str) -> str | None:
    """An IPv6 address that is more than a time, a C++ scope or `::1`: valid, and with
    three groups or a group of three or more characters holding a digit."""
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    groups = [g for g in candidate.split(":") if g]
    if len(groups) < 3 and not any(len(g) >= 3 and any(c.isdigit() for c in g) for g in groups):
        return None
    return address.compressed


def _runs(mapped: bytes, needle: bytes) -> Iterator[tuple[int, int]]:
    """The spans of the runs of `x` in `mapped` at least as long as `needle`."""
    at = mapped.find(needle)
    while at != -1:
        end = mapped.find(b" ", at + len(needle))
        end = len(mapped) if end == -1 else end
        yield at, end
        at = mapped.find(needle, end)


def _window(pattern: re.Pattern, text: str, start: int, end: int) -> Iterator[re.Match]:
    """Matches of `pattern` in text[start:end], judged against the whole text: a match
    that reaches `end` before the end of the text is dropped (its look-ahead saw a false
    end)."""
    start, end = max(0, start), min(len(text), end)
    for match in pattern.finditer(text, start, end):
        if match.end() == end < len(text):
            continue
        yield match


# --- the redactor -----------------------------------------------------------------------


class Redactor:
    """Finds personal data and secrets and replaces them with per-tenant placeholders.

    `key` is the secret of the placeholders' HMAC; `phone_regions` are the regions whose
    national format phone numbers without a country code are read in; `redact_texts`
    keeps the findings of the last texts it scanned, up to `remembered_chars` characters
    of them (0: none), so that a text seen again is not scanned again.
    """

    def __init__(
        self, key: bytes, phone_regions: Sequence[str] = ("US",), remembered_chars: int = 0
    ):
        if not key:
            raise ValueError("the redaction key must not be empty")
        if not phone_regions:
            raise ValueError("at least one phone region is needed")
        lengths = []
        for region in phone_regions:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is None:
                raise ValueError(f"unknown phone region: {region!r}")
            lengths += metadata.general_desc.possible_length
        self._key = key
        self._phone_regions = tuple(phone_regions)
        self._national_phone_digits = min(lengths)
        # A conversation's values come back in every later call of its session.
        self.placeholder = lru_cache(maxsize=65536)(self._placeholder)
        # And so do its texts: every call of a session carries the messages before it.
        # Findings do not depend on the tenant, only on the text (and the phone regions).
        self._remembered: dict[str, tuple[Finding, ...]] = {}
        self._remembered_chars = remembered_chars
        self._remembering_chars = 0

    # --- finding ---

    def find(self, text: str) -> list[Finding]:
        """Every value to redact in `text`, without overlaps, in order.

        JSON's escapes (`\\n`, `\\"`, `\\u00e9`) count as spaces, so a JSON document (a
        tool's result, a tool call's arguments) can be redacted in place: every value
        found lies inside one of its strings or numbers, and placeholders need no
        escaping."""
        if "\\" in text:
            text = _JSON_ESCAPE.sub(_blank, text)
        found: list[Finding] = []
        if "-----BEGIN" in text:
            found += self._find_private_keys(text)
        if "@" in text:
            found += self._find_emails(text)
        if "://" in text:
            found += [
                Finding(m.start(1), m.end(1), SECRET, m.group(1))
                for m in _URL_PASSWORD.finditer(text)
            ]
        lowered = text.lower()
        # Spelt out: a generator over the keywords costs more than the searches.
        if (
            "pass" in lowered
            or "pwd" in lowered
            or "secret" in lowered
            or "token" in lowered
            or "api" in lowered
            or "bearer" in lowered
            or "basic" in lowered
        ):
            found += self._find_keyword_secrets(text, lowered)
        # One byte per character ("?" for any other than ASCII), so offsets carry over.
        ascii_text = text.encode("ascii", "replace")
        # `\d` also matches the digits of other scripts, which the mapping would lose.
        runs = (
            _MAPPED_DIGIT_RUN.finditer(ascii_text.translate(_DIGIT_RUN_BYTES))
            if text.isascii()
            else _DIGIT_RUN.finditer(text)
        )
        for run in runs:
            start, end = run.span()
            # Most runs are years, prices or ISO dates: no kind has fewer than six digits
            # (an IPv4 address has three dots), and a date is none.
            if end - start < 6 or (end - start == 10 and _ISO_DATE.fullmatch(text, start, end)):
                continue
            found += self._find_in_digit_run(text, start, end)
        for start, end in _runs(ascii_text.translate(_TOKEN_BYTES), _LONG_TOKEN):
            found += self._find_in_token_run(text, start, end)
        for start, end in _runs(ascii_text.translate(_HEX_BYTES), _LONG_HEX):
            found += self._find_ipv6(text, start, end)
        # An IBAN starts with two letters and two digits at the start of a word.
        shapes = ascii_text.translate(_SHAPE_BYTES)
        at = shapes.find(b"AA99")
        while at != -1:
            if at == 0 or shapes[at - 1] == 32:
                found += self._find_iban(text, at)
            at = shapes.find(b"AA99", at + 1)
        at = text.find("::")
        while at != -1:
            found += self._find_ipv6(text, at - 40, at + 42)
            at = text.find("::", at + 42)
        return _without_overlaps(found)

    def _find_private_keys(self, text: str) -> list[Finding]:
        found = []
        for match in _PEM_PRIVATE_KEY.finditer(text):
            key = match.group().rstrip()
            # The trailing whitespace stays: it may be the joint of two texts.
            found.append(
                Finding(match.start(), match.start() + len(key), SECRET, "".join(key.split()))
            )
        return found

    def _find_emails(self, text: str) -> list[Finding]:
        found = []
        at = text.find("@")
        while at != -1:
            # An address has at most 64 characters before its @ and 255 after.
            for match in _window(_EMAIL, text, at - 64, at + 256):
                if match.start() <= at < match.end():
                    found.append(Finding(match.start(), match.end(), EMAIL, match.group().lower()))
            at = text.find("@", at + 1)
        return found

    def _find_keyword_secrets(self, text: str, lowered: str) -> list[Finding]:
        found = []
        for keyword in _SECRET_KEYWORDS:
            at = lowered.find(keyword)
            while at != -1:
                scheme = keyword in ("bearer", "basic")
                pattern = _BEARER if scheme else _KEYWORD_SECRET
                match = pattern.match(text, at)
                if match:
                    value = _strip_trailing(match.group("value"))
                    if len(value) < 4:
                        at = lowered.find(keyword, at + 1)
                        continue
                    # "The secret is out", "basic information": after "is", "Bearer" or
                    # "Basic", only a value with a digit or a symbol counts.
                    loose = scheme or match.group("separator") == "is"
                    if not (loose and value.isalpha()):
                        start = match.start("value")
                        found.append(Finding(start, start + len(value), SECRET, value))
                at = lowered.find(keyword, at + 1)
        return found

    def _find_in_digit_run(self, text: str, start: int, end: int) -> list[Finding]:
        written = text[start:end]
        digits = written.translate(_DROP_SEPARATORS)
        dots = written.count(".")
        if len(digits) < 6 and dots < 3:
            return []
        if len(digits) == 8 and _ISO_DATE.fullmatch(written):
            return []
        found = []
        if dots >= 3:
            for match in _window(_IPV4, text, start, end + 1):
                found.append(Finding(match.start(), match.end(), IP, match.group()))
        if len(digits) >= 13:
            for match in _window(_CARD, text, start, end + 1):
                card = _card_digits(match.group())
                if card:
                    found.append(Finding(match.start(), match.end(), CARD, card))
        if len(digits) in _NATIONAL_ID_DIGITS:
            for match in _window(_NATIONAL_ID, text, start - 3, end + 3):
                value = _valid_national_id(match)
                if value:
                    found.append(Finding(match.start(), match.end(), NATIONAL_ID, value))
            if (
                len(digits) == 9
                and digits == written
                and _SSN_CONTEXT.search(text, max(0, start - _SSN_LOOKBACK), start)
                and ssn.is_valid(digits)
            ):
                found.append(Finding(start, end, NATIONAL_ID, digits))
        found += self._find_phone(text, start, end)
        return found

    def _find_iban(self, text: str, start: int) -> list[Finding]:
        match = _IBAN.match(text, start)
        if not match:
            return []
        candidate = match.group()
        # The pattern may run on into the next word: take the longest prefix that ends at
        # a separator (or where the pattern stopped, at the end of a word) and is valid.
        cuts = [i for i in range(len(candidate) - 1, 14, -1) if candidate[i] in " -"]
        if match.end() == len(text) or not text[match.end()].isalnum():
            cuts.insert(0, len(candidate))
        for cut in cuts:
            value = candidate[:cut].upper()
            if stdnum_iban.is_valid(value):
                return [Finding(start, start + cut, IBAN, stdnum_iban.compact(value))]
        return []

    def _find_phone(self, text: str, start: int, end: int) -> list[Finding]:
        """A phone number in the digit run at start:end, with the `+` or `(` before it."""
        if start > 0 and text[start - 1] in "+(":
            start -= 1
            if start > 0 and text[start] == "(" and text[start - 1] == "+":
                start -= 1
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in _PHONE_BEFORE):
            return []
        extension = _EXTENSION.match(text, end)
        if extension:
            found = self._phones_in(text, start, end)
            if found and found[-1].end == end:
                last = found[-1]
                found[-1] = Finding(last.start, extension.end(), PHONE, last.value)
            return found
        if end < len(text) and text[end].isalnum():
            # The last group belongs to the word after it ("(24h)"); with no group before
            # it, the digits are part of a longer token (a hash, a product code).
            cut = max(text.rfind(separator, start, end) for separator in " -.(")
            if cut <= start:
                return []
            end = start + len(text[start:cut].rstrip(" -.()"))
        return self._phones_in(text, start, end)

    def _phones_in(self, text: str, start: int, end: int) -> list[Finding]:
        candidate = text[start:end]
        digits = candidate.translate(_DROP_SEPARATORS).lstrip("+")
        international = candidate.startswith(("+", "00"))
        if len(digits) < (7 if international else self._national_phone_digits):
            return []
        date = _DATE.search(candidate)
        if date:
            # "2019-03-01 11" is a date and an hour, not a number: look on either side.
            pieces = ((start, start + date.start()), (start + date.end(), end))
            found = []
            for piece_start, piece_end in pieces:
                for match in _PHONE.finditer(text, piece_start, piece_end):
                    found += self._phones_in(text, match.start(), match.end())
            return found
        e164 = self._phone_number(candidate)
        if e164:
            return [Finding(start, end, PHONE, e164)]
        if len(digits) <= self._national_phone_digits:
            return []
        # More digits than a number: a number and what follows ("(415) 567-5432 (24h)"),
        # or two numbers side by side, which libphonenumber's matcher tells apart.
        for cut in _group_ends(candidate)[:2]:
            e164 = self._phone_number(candidate[:cut])
            if e164:
                return [Finding(start, start + cut, PHONE, e164)]
        return [
            Finding(start + match_start, start + match_end, PHONE, e164)
            for match_start, match_end, e164 in _phones_matched(candidate, self._phone_regions[0])
        ]

    def _phone_number(self, candidate: str) -> str | None:
        """The E.164 form of `candidate` read in the first region it is a number of."""
        for region in self._phone_regions:
            e164 = _phone_e164(candidate, region)
            if e164:
                return e164
        return None

    def _find_in_token_run(self, text: str, start: int, end: int) -> list[Finding]:
        run = text[start:end]
        # Every key, known or random, has a capital or a digit: skip the lower-case words.
        if run.islower() and not _DIGIT.search(run):
            return []
        found = [
            Finding(match.start(), match.end(), SECRET, match.group())
            for match in _KNOWN_SECRET.finditer(text, start, end)
        ]
        # A URL's host and path are not keys (its query string, a run of its own, may be).
        if not (text.startswith("//", start) and text[start - 1 : start] == ":"):
            for match in _RANDOM_TOKEN.finditer(text, start, end):
                if _looks_random(match.group()):
                    found.append(
                        Finding(match.start(), match.end(), SECRET, match.group(), weak=True)
                    )
        return found

    def _find_ipv6(self, text: str, start: int, end: int) -> list[Finding]:
        found = []
        for match in _window(_IPV6, text, start - 40, end + 40):
            value = _valid_ipv6(match.group())
            if value:
                found.append(Finding(match.start(), match.end(), IP, value))
        return found

    # --- replacing ---

    def _placeholder(self, tenant: str, kind: str, value: str) -> str:
        """The placeholder of `value` for `tenant`: the same for the same value, always."""
        message = f"{tenant}\x1f{kind}\x1f{value}".encode()
        return f"<{kind.upper()}_{hmac.digest(self._key, message, 'sha256').hex()[:8]}>"

    def redact_text(self, text: str, tenant: str) -> tuple[str, Counter[str]]:
        """`text` with every value found replaced by its placeholder, and how many of
        each kind were replaced."""
        counts: Counter[str] = Counter()
        return self._replace(text, self.find(text), tenant, counts), counts

    def _replace(
        self, text: str, findings: Sequence[Finding], tenant: str, counts: Counter[str]
    ) -> str:
        """`text` with `findings` replaced by their placeholders, counted in `counts`."""
        if not findings:
            return text
        pieces = []
        position = 0
        for finding in findings:
            pieces.append(text[position : finding.start])
            pieces.append(self.placeholder(tenant, finding.kind, finding.value))
            counts[finding.kind] += 1
            position = finding.end
        pieces.append(text[position:])
        return "".join(pieces)

    def redact_texts(self, texts: list[str], tenant: str) -> tuple[list[str], Counter[str]]:
        """`redact_text` over many texts, scanned as one (much cheaper than one by one);
        the texts whose findings are remembered are not scanned again."""
        counts: Counter[str] = Counter()
        findings = self._find_in_texts(texts)
        if findings is None:
            joined = _JOINT.join(texts)
            if joined.count(_JOINT[1]) == len(texts) - 1:
                joined, counts = self.redact_text(joined, tenant)
                return (joined.split(_JOINT) if counts else texts), counts
            return [self._replace(text, self.find(text), tenant, counts) for text in texts], counts
        return [
            self._replace(text, found, tenant, counts)
            for text, found in zip(texts, findings, strict=True)
        ], counts

    def _find_in_texts(self, texts: list[str]) -> list[tuple[Finding, ...]] | None:
        """The findings of each text (its own offsets), the texts not remembered scanned
        as one; None when remembering is off or does not apply (a text holds a NUL, or the
        findings of one may depend on the text before it)."""
        if not self._remembered_chars:
            return None
        remembered = self._remembered
        findings = [remembered.get(text) for text in texts]
        unseen = [slot for slot, found in enumerate(findings) if found is None and texts[slot]]
        if not unseen:
            return [found or () for found in findings]
        scanned = [texts[slot] for slot in unseen]
        joined = _JOINT.join(scanned)
        if joined.count(_JOINT[1]) != len(scanned) - 1:
            return None
        # Nine bare digits are an SSN when "SSN" precedes them, in the text before too (a
        # question and its answer): such a text is scanned where it stands, never alone.
        if any(_NINE_DIGITS.search(text, 0, _SSN_LOOKBACK + 9) for text in scanned):
            return None
        starts = []
        position = 0
        for text in scanned:
            starts.append(position)
            position += len(text) + len(_JOINT)
        per_text: list[list[Finding]] = [[] for _ in scanned]
        for finding in self.find(joined):
            index = bisect_right(starts, finding.start) - 1
            offset = starts[index]
            if finding.end > offset + len(scanned[index]):
                return None  # no finding crosses a joint; were one to, redo the whole
            per_text[index].append(
                dataclasses.replace(finding, start=finding.start - offset, end=finding.end - offset)
            )
        for slot, text, found in zip(unseen, scanned, per_text, strict=True):
            findings[slot] = tuple(found)
            if len(text) > self._remembered_chars // 16 or text in remembered:
                continue  # a duplicate within the call, or a text too long to keep
            self._remembering_chars += len(text)
            while self._remembering_chars > self._remembered_chars:
                # The oldest out: cheaper than an LRU's bookkeeping on every hit.
                oldest = next(iter(remembered))
                self._remembering_chars -= len(oldest)
                del remembered[oldest]
            remembered[text] = findings[slot]
        return [found or () for found in findings]

    def redact_json(self, document: str, tenant: str) -> tuple[str, Counter[str]]:
        """A JSON document (a tool call's arguments, a tool's result) redacted, and still
        valid JSON if it was; text that is not JSON is redacted as text."""
        redacted, counts = self.redact_text(document, tenant)
        return self._keep_json_valid(document, redacted, counts, tenant)

    def _keep_json_valid(
        self, document: str, redacted: str, counts: Counter[str], tenant: str
    ) -> tuple[str, Counter[str]]:
        """`redacted` if it is still JSON (or `document` never was); otherwise `document`
        redacted value by value. That happens when a number was redacted (its placeholder
        needs quotes) or a value spanned two strings."""
        if redacted is document or not document.lstrip().startswith(("{", "[")):
            return redacted, counts
        try:
            json.loads(redacted)
            return redacted, counts
        except ValueError:
            pass
        try:
            parsed = json.loads(document)
        except ValueError:
            return redacted, counts
        texts: list[str] = []
        secret_slots: set[int] = set()
        _gather_json(parsed, None, texts, secret_slots)
        values, counts = self._redact_slots(texts, secret_slots, tenant)
        rebuilt = json.dumps(_rebuild_json(parsed, iter(values)), ensure_ascii=False)
        return rebuilt, counts

    def _redact_slots(
        self, texts: list[str], secret_slots: set[int], tenant: str
    ) -> tuple[list[str], Counter[str]]:
        """Redacts `texts`; those at `secret_slots` are secrets as a whole."""
        if not secret_slots:
            return self.redact_texts(texts, tenant)
        scanned = ["" if slot in secret_slots else text for slot, text in enumerate(texts)]
        redacted, counts = self.redact_texts(scanned, tenant)
        redacted = list(redacted)
        for slot in secret_slots:
            redacted[slot] = texts[slot]
            if texts[slot] and not PLACEHOLDER.fullmatch(texts[slot]):
                redacted[slot] = self.placeholder(tenant, SECRET, texts[slot])
                counts[SECRET] += 1
        return redacted, counts

    def redact_trace(self, trace: AnyTrace) -> AnyTrace:
        """`trace` with the personal data and secrets of its messages (the request's and
        the response's: text, tool calls' arguments, tools' results), its error and its
        route's reason replaced; tool definitions are the agent's, not the user's, and
        stay. Counts what it replaced in `interns_pii_redacted_total`."""
        fields = _TraceTexts(trace)
        redacted, counts = self.redact_texts(fields.texts, trace.tenant_id)
        if not counts:
            return trace
        redacted = list(redacted)
        for slot in fields.json_slots:
            original, new = fields.texts[slot], redacted[slot]
            if new is not original and new != original:
                fixed, _ = self._keep_json_valid(original, new, Counter(), trace.tenant_id)
                if fixed is not new:
                    counts.subtract(_placeholder_kinds(new))
                    counts.update(_placeholder_kinds(fixed))
                    redacted[slot] = fixed
        for kind, count in counts.items():
            if count:
                PII_REDACTED.labels("trace-collector", kind).inc(count)
        return fields.rebuild(redacted)


_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)")


def _blank(match: re.Match) -> str:
    return " " * len(match.group())


def _placeholder_kinds(text: str) -> Counter[str]:
    return Counter(match.group()[1:-10].lower() for match in PLACEHOLDER.finditer(text))


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    """Findings in text order; of overlapping ones, a strong one before a weak one, then
    the kind that comes first in `KINDS`, then the longer, wins."""
    if len(findings) < 2:
        return findings
    kept: list[Finding] = []
    ranked = sorted(findings, key=lambda f: (f.weak, _PRIORITY[f.kind], f.start - f.end))
    for finding in ranked:
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


# --- JSON value by value, and traces ----------------------------------------------------

_BIG_INTEGER = 1_000_000


def _gather_json(value: Any, key: str | None, texts: list[str], secret_slots: set[int]) -> None:
    """Appends the strings of `value` (and its integers of 7 digits and more, which may be
    phone or card numbers) to `texts`, depth first; a string under a secret's key is
    marked in `secret_slots`."""
    if isinstance(value, str):
        if key is not None and _SECRET_JSON_KEY.search(key):
            secret_slots.add(len(texts))
        texts.append(value)
    elif isinstance(value, dict):
        for child_key, child in value.items():
            _gather_json(child, child_key, texts, secret_slots)
    elif isinstance(value, list):
        for child in value:
            _gather_json(child, key, texts, secret_slots)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _BIG_INTEGER:
        texts.append(str(value))


def _rebuild_json(value: Any, redacted: Iterator[str]) -> Any:
    """`value` with its gathered strings replaced, in the order `_gather_json` took them;
    an integer found to be a number to redact becomes its placeholder (a string)."""
    if isinstance(value, str):
        return next(redacted)
    if isinstance(value, dict):
        return {key: _rebuild_json(child, redacted) for key, child in value.items()}
    if isinstance(value, list):
        return [_rebuild_json(child, redacted) for child in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _BIG_INTEGER:
        text = next(redacted)
        return value if text == str(value) else text
    return value


def trace_texts(trace: AnyTrace) -> list[str]:
    """The texts of `trace` that redaction covers, in the order `redact_trace` takes them."""
    return _TraceTexts(trace).texts


class _TraceTexts:
    """The user data of a trace as a flat list of texts, and the way back: messages'
    contents, tool calls' arguments, the error and the route's reason, in that order."""

    def __init__(self, trace: AnyTrace):
        self.trace = trace
        self.texts: list[str] = []
        self.json_slots: list[int] = []
        for message in trace.request.messages:
            self._add_message(message)
        if trace.response and trace.response.message:
            self._add_message(trace.response.message)
        self.texts.append(trace.error)
        self.texts.append(trace.route.reason)

    def _add_message(self, message: MessageRecord | MessageWire) -> None:
        if message.role == "tool":
            self.json_slots.append(len(self.texts))
        self.texts.append(message.content or "")
        for call in message.tool_calls or ():
            self.json_slots.append(len(self.texts))
            self.texts.append(call.function.arguments)

    def rebuild(self, redacted: list[str]) -> AnyTrace:
        """The trace with `redacted` in place of `texts`; what did not change is shared."""
        slots = iter(range(len(redacted)))
        originals = self.texts

        def changed(slot: int) -> bool:
            return redacted[slot] is not originals[slot] and redacted[slot] != originals[slot]

        def message_of(message: MessageRecord | MessageWire) -> MessageRecord | MessageWire:
            update: dict[str, Any] = {}
            content_slot = next(slots)
            if changed(content_slot):
                update["content"] = redacted[content_slot]
            calls = []
            for call in message.tool_calls or ():
                slot = next(slots)
                if changed(slot):
                    function = _replaced(call.function, {"arguments": redacted[slot]})
                    call = _replaced(call, {"function": function})
                    update["tool_calls"] = calls
                calls.append(call)
            return _replaced(message, update) if update else message

        trace = self.trace
        messages = [message_of(message) for message in trace.request.messages]
        update: dict[str, Any] = {"request": _replaced(trace.request, {"messages": messages})}
        if trace.response and trace.response.message:
            message = message_of(trace.response.message)
            update["response"] = _replaced(trace.response, {"message": message})
        error_slot, reason_slot = next(slots), next(slots)
        update["error"] = redacted[error_slot]
        update["route"] = _replaced(trace.route, {"reason": redacted[reason_slot]})
        return _replaced(trace, update)


def _replaced(record: Any, update: dict[str, Any]) -> Any:
    """`record`, a pydantic event model or its msgspec mirror, with `update` applied."""
    if isinstance(record, msgspec.Struct):
        return msgspec.structs.replace(record, **update)
    return record.model_copy(update=update)
