"""Times and counts in the conversation rewritten the way tool-call arguments write them.

The expert answers "6:15 in the evening" with `"18:15"` and "two people" with `"2"`: a
conversion a small intern learns from a few examples only partly (on SGD, 26 to 55% of the
time arguments and a third of the count arguments are not written verbatim in the
conversation). With `normalize_values` the intern's prompt carries the converted form
instead ("at 18:15", "2 people"), so the argument is copied, not computed. The rewrite is
deterministic and applied to the same turns in training and in serving (prompting.py
calls it); the answers are never touched.

Rewritten: a clock time with its part of the day ("6:15 pm", "half past 6 in the evening",
"quarter to 7 pm", "afternoon 3", "2 o'clock in the afternoon", "noon") as 24-hour
`HH:MM`; a bare time without its part of the day is ambiguous and stays. Number words from
one to twenty as digits, except a capitalised word followed by another capitalised word or
nothing (a name like "Three Seasons"), and "one" used as a pronoun ("that one").

Day ordinals of a date lose their suffix ("March 1st", "the 3rd of March", "on the 8th."
as "March 1", "the 3 of March", "on the 8."): the intern otherwise copies "1st" into a
`2019-03-1st` date. Street numbers ("West 4th Street") and names keep theirs: only an
ordinal after a month, before "of", or after "the" at the end of a phrase is rewritten.

Written by hand: the phrasings are few and English-only, and a date/time parsing library
would also rewrite dates (which need today's date, and the dialogues never give it).
"""

from __future__ import annotations

import re

WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
}
HOUR_WORDS = "|".join(word for word, value in WORDS.items() if value <= 12)
HOUR = rf"(?P<hour>\d{{1,2}}|{HOUR_WORDS})(?::(?P<minute>[0-5]\d))?"
FRACTION = r"(?:(?P<fraction>half|quarter)\s+(?P<relation>past|to)\s+)?"
OCLOCK = r"(?:\s*o\s?['\"’]?\s?clock)?"
MERIDIEM = r"(?P<meridiem>[ap]\.\s?m\.|[ap]\s?m\b)"
PART = r"(?P<part>morning|afternoon|evening|night|noon)"
# "6:15 pm", "half past 6 in the evening", "2 o'clock in the afternoon", "11 at night".
TIME_THEN_PART = re.compile(
    rf"(?<![\w:.]){FRACTION}{HOUR}{OCLOCK}\s*(?:{MERIDIEM}|(?:in\s+the|at|this)\s+{PART}\b)",
    re.IGNORECASE,
)
# "afternoon 3", "morning 11:30", "evening at half past 6".
PART_THEN_TIME = re.compile(
    rf"\b{PART}\s+(?:at\s+)?{FRACTION}{HOUR}\b(?!:){OCLOCK}(?!\s*[ap]\.?\s?m\b)",
    re.IGNORECASE,
)
NOON = re.compile(r"\b(?P<word>noon|midnight)\b", re.IGNORECASE)
NUMBER_WORD = re.compile(
    rf"\b(?P<word>{'|'.join(WORDS)})\b(?=(?P<after>\s+\S|\W|$))", re.IGNORECASE
)
ORDINAL = re.compile(r"\b(?P<day>[1-9]|[12]\d|3[01])(?:st|nd|rd|th)\b", re.IGNORECASE)
MONTH_BEFORE = re.compile(
    r"\b(?:january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?\s+$",
    re.IGNORECASE,
)
THE_BEFORE = re.compile(r"\bthe\s+$", re.IGNORECASE)
OF_AFTER = re.compile(r"\s+of\b", re.IGNORECASE)
# After "the", a day ends its phrase ("the 3rd.", "the 3rd at 6 pm"), a floor does not.
PHRASE_END = re.compile(
    r"\s*(?:[.,!?;]|$)|\s+(?:at|and|in|to|from|for|or|please|instead|until|till|through"
    r"|then|is|would|will|works)\b",
    re.IGNORECASE,
)
# "one" as a pronoun, not a count: "that one", "the one", "no one".
PRONOUN_BEFORE = re.compile(
    r"\b(?:this|that|the|no|which|any|every|another|each|some|other)\s+$", re.IGNORECASE
)


def _clock(match: re.Match[str]) -> str:
    """The 24-hour `HH:MM` for a matched time, or the text itself when it makes no sense."""
    groups = match.groupdict()
    hour_text = groups["hour"].lower()
    hour = WORDS[hour_text] if hour_text in WORDS else int(hour_text)
    minute = int(groups["minute"]) if groups.get("minute") else 0
    fraction = (groups.get("fraction") or "").lower()
    if fraction:
        if groups.get("minute"):
            return match.group(0)
        if fraction == "half":
            minute = 30
        elif groups["relation"].lower() == "past":
            minute = 15
        else:
            hour, minute = hour - 1 if hour > 1 else 12, 45
    meridiem = (groups.get("meridiem") or "").lower().replace(".", "").replace(" ", "")
    part = (groups.get("part") or "").lower()
    if hour > 12 or hour == 0:
        # Already a 24-hour clock ("13:00 pm" is kept as 13:00); 0 only as 0:MM.
        return f"{hour:02d}:{minute:02d}" if hour <= 23 else match.group(0)
    if meridiem == "am" or part == "morning":
        hour = 0 if hour == 12 else hour
    elif meridiem == "pm" or part in {"afternoon", "evening"}:
        hour = hour if hour == 12 else hour + 12
    elif part == "night":
        # "11 at night" is 23:00, "12 at night" midnight, "2 at night" 02:00.
        hour = 0 if hour == 12 else hour + 12 if hour >= 6 else hour
    elif part == "noon" and hour != 12:
        return match.group(0)
    return f"{hour:02d}:{minute:02d}"


def _number(match: re.Match[str], text: str) -> str:
    word, after = match.group("word"), match.group("after")
    if word[0].isupper() and not re.match(r"\s+[a-z]", after):
        # A name ("Three Seasons") or a word on its own ("Four."): left as written.
        return match.group(0)
    if word.lower() == "one" and PRONOUN_BEFORE.search(text[: match.start()]):
        return match.group(0)
    if word.lower() == "one" and re.match(r"\s+(?:of|another)\b", text[match.end() :]):
        return match.group(0)
    return str(WORDS[word.lower()])


def normalize_times(text: str) -> str:
    """Clock times with their part of the day as 24-hour `HH:MM`."""
    text = TIME_THEN_PART.sub(_clock, text)
    text = PART_THEN_TIME.sub(_clock, text)
    return NOON.sub(lambda m: "12:00" if m.group("word").lower() == "noon" else "00:00", text)


def normalize_counts(text: str) -> str:
    """Number words (one to twenty) as digits, names and the pronoun "one" left alone."""
    return NUMBER_WORD.sub(lambda match: _number(match, text), text)


def _day(match: re.Match[str], text: str) -> str:
    before, after = text[: match.start()], text[match.end() :]
    if (
        MONTH_BEFORE.search(before)
        or OF_AFTER.match(after)
        or (THE_BEFORE.search(before) and PHRASE_END.match(after))
    ):
        return match.group("day")
    return match.group(0)


def normalize_days(text: str) -> str:
    """Day ordinals of dates without their suffix ("March 1st" -> "March 1")."""
    return ORDINAL.sub(lambda match: _day(match, text), text)


def normalize_values(text: str) -> str:
    """Times, then counts (so that "one in the afternoon" becomes 13:00, not "1 in ..."),
    then day ordinals."""
    return normalize_days(normalize_counts(normalize_times(text)))
