"""Property-based fuzzing (hypothesis) of what reads untrusted text: the query normaliser, the
button-data parser and the update reader. Small in CI; 10,000 cases each with
STICKTIONARY_FUZZ_EXAMPLES=10000."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots import callbacks
from bots.messages.incoming import incoming_from_update
from bots.messages.limits import CAPTION_LIMIT, TEXT_LIMIT, utf16_units
from bots.messages.replies import SendGrid, SendText
from core.text import QueryTextError, clean_query_text, normalize_query, normalize_text

EXAMPLES = int(os.environ.get("STICKTIONARY_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Every code point, surrogates included, with the troublesome classes drawn often.
SPECIAL = "\x00\x07\t\n\r\x1b\x7f\x85\u00ad\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2028\u2029\u2060\u2064" \
          "\ufeff\ufe0f\U000e0041\U000e007f\ud800\udfff\uff0c，, /😂👍\U0001F3FB\u0301ﬁ①Ａ"
any_text = st.text(alphabet=st.one_of(st.characters(codec=None), st.sampled_from(SPECIAL)), max_size=200)
REFUSED = {"Cc", "Zl", "Zp", "Cs"}


@fuzz
@given(any_text)
def test_the_normaliser_refuses_with_a_reason_or_returns_clean_stable_text(text):
    try:
        cleaned = clean_query_text(text, max_chars=64)
    except QueryTextError as error:
        assert error.code in {"empty", "too_long", "control_chars", "invalid_chars", "command", "no_words",
                              "only_emoji"}
        return
    categories = {unicodedata.category(ch) for ch in cleaned}
    assert not categories & (REFUSED | {"Cf"}), [hex(ord(ch)) for ch in cleaned]
    assert cleaned == cleaned.strip() and "  " not in cleaned and ", " not in cleaned
    assert 0 < len(cleaned) <= 64 and not cleaned.startswith("/")
    assert unicodedata.normalize("NFKC", cleaned) == cleaned
    assert clean_query_text(cleaned, max_chars=64) == cleaned  # idempotent
    key = normalize_query(cleaned)
    assert normalize_query(key) == key and not any(unicodedata.category(ch) == "Cf" for ch in key)
    cleaned.encode("utf-8")  # storable and sendable


@fuzz
@given(any_text)
def test_normalize_text_is_idempotent_and_leaves_no_invisible_character(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert not any(unicodedata.category(ch) == "Cf" for ch in once)


def _action_strategy():
    def build(cls):
        values = {}
        for item in fields(cls):
            if item.name in cls.choices:
                values[item.name] = st.sampled_from(cls.choices[item.name])
            else:
                low, high = cls.bounds.get(item.name, (1, callbacks.MAX_ID))
                values[item.name] = st.integers(low, high)
        return st.builds(cls, **values)
    return st.one_of([build(cls) for cls in callbacks.ACTIONS.values()])


@fuzz
@given(_action_strategy())
def test_every_button_round_trips_within_64_bytes(button):
    data = button.encode()
    assert 1 <= len(data.encode()) <= 64
    assert callbacks.decode(data) == button


near_miss = st.builds(lambda prefix, parts: ":".join([prefix, *parts]),
                      st.sampled_from(sorted(callbacks.ACTIONS) + ["", "x", "LS", "ls "]),
                      st.lists(st.one_of(st.integers(-10**20, 10**20).map(str), st.text(max_size=12),
                                         st.sampled_from(["en", "zh", "01", "+1", "1e3", "٣", "0", " 1"])), max_size=3))


@fuzz
@given(st.one_of(any_text, near_miss, st.binary(max_size=80).map(lambda b: b.decode("latin-1"))))
def test_the_button_parser_never_raises_and_accepts_only_canonical_in_range_data(data):
    button = callbacks.decode(data)
    if button is None:
        return
    assert button.encode() == data  # only the canonical form is accepted
    for item in fields(button):
        value = getattr(button, item.name)
        if item.name in button.choices:
            assert value in button.choices[item.name]
        else:
            low, high = button.bounds.get(item.name, (1, callbacks.MAX_ID))
            assert type(value) is int and low <= value <= high


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=12)
update_like = st.fixed_dictionaries(
    {"update_id": st.one_of(st.integers(), json_value)},
    optional={"message": st.fixed_dictionaries({}, optional={
        "text": st.one_of(any_text, json_value), "chat": st.one_of(json_value, st.fixed_dictionaries(
            {"id": st.one_of(st.integers(), json_value)}, optional={"type": st.sampled_from(["private", "group"])})),
        "from": st.one_of(json_value, st.fixed_dictionaries({"id": st.one_of(st.integers(), json_value)}, optional={
            "first_name": st.one_of(any_text, json_value), "language_code": json_value}))}),
        "callback_query": st.fixed_dictionaries({}, optional={
            "data": st.one_of(any_text, json_value), "id": json_value, "message": json_value,
            "from": st.fixed_dictionaries({"id": st.one_of(st.integers(), json_value)})})})


@fuzz
@given(update_like)
def test_reading_any_update_never_raises_and_never_invents_a_player(update):
    incoming = incoming_from_update(update)
    if incoming is not None:
        assert type(incoming.user_id) is int and incoming.user_id > 0 and type(incoming.chat_id) is int
        incoming.display_name.encode("utf-8")


@settings(max_examples=max(20, EXAMPLES // 10), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(any_text, st.lists(st.lists(st.tuples(any_text, _action_strategy().map(lambda b: b.encode())),
                                   max_size=12), max_size=12))
def test_every_reply_fits_telegrams_limits(text, buttons):
    for reply, limit in ((SendText(text * 40, buttons), TEXT_LIMIT), (SendGrid([], text * 20, buttons), CAPTION_LIMIT)):
        body = reply.text if isinstance(reply, SendText) else reply.caption
        assert utf16_units(body) <= limit
        body.encode("utf-8")
        rows = reply.buttons or []
        assert all(len(row) <= 8 for row in rows) and sum(map(len, rows)) <= 100
        for row in rows:
            for label, data in row:
                assert label.strip() and utf16_units(label) <= 64 and 1 <= len(data.encode()) <= 64
                label.encode("utf-8")
