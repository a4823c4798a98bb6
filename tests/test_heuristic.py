"""How the heuristic baseline reads a journey's requests: the shopper's lead into a new
request is not searched for, and a request's kind survives the shopper's typos."""

from __future__ import annotations

import pytest

from ecomrlve.envs.journey import TRANSITIONS, TRANSITIONS_UNTHANKED
from ecomrlve.policies.heuristic import DEFAULT_INTENT, drop_lead, request_kind


@pytest.mark.parametrize("lead", TRANSITIONS + TRANSITIONS_UNTHANKED)
def test_every_journey_lead_is_dropped(lead):
    assert drop_lead(f"{lead} I'm looking for a desk lamp. Thanks!") == "I'm looking for a desk lamp. Thanks!"


def test_drop_lead_keeps_a_request_and_a_lone_sentence():
    assert drop_lead("I need a lamp. Thanks!") == "I need a lamp. Thanks!"
    assert drop_lead("Thanks!") == "Thanks!"  # never drops everything
    assert drop_lead("Okay. Where is order W1234567?") == "Where is order W1234567?"


@pytest.mark.parametrize("text, kind", [
    ("i need these categories: lamps, rugs", "E_BUNDLE"),
    ("i need these cateogries: lamps, rugs", "E_BUNDLE"),  # swapped letters
    ("where is my ordre?", "E_STATUS"),
    ("i want to retrun the blender", "E_RETURN"),
    ("please put it in my carrt", "E_CART"),  # a doubled letter
    ("the blender i wanted is sold out", "E_SUB"),
    ("a quiet blender under $80", DEFAULT_INTENT),  # no intent words, with or without typos
])
def test_request_kind_tolerates_typos(text, kind):
    assert request_kind(text) == kind


def test_an_exact_intent_word_wins_over_a_typo_match():
    # "part" is one typo from "cart", but "return" occurs exactly
    assert request_kind("return the part") == "E_RETURN"
