"""What the session index prepares per device: one prepared key per distinct key."""

from __future__ import annotations

import random

from packet_forwarder.keystore.index import Candidate
from packet_forwarder.keystore.store import StoredSession
from packet_forwarder.lorawan import CmacKey, SessionKeys11
from tests.support.keystore import make_device


def test_a_1_0_session_prepares_its_nwk_s_key_once() -> None:
    device = make_device(random.Random(3))
    cand = Candidate(StoredSession(device.session(), b"k" * 16))
    assert cand.s_key is cand.mic_key
    assert cand.mic_key.cmac(b"abc") == CmacKey(device.session().f_nwk_s_int_key).cmac(b"abc")


def test_a_1_1_session_keeps_its_two_integrity_keys_apart() -> None:
    device = make_device(random.Random(4), "1.1.0")
    assert isinstance(device.keys, SessionKeys11)
    cand = Candidate(StoredSession(device.session(), b"k" * 16))
    assert cand.s_key is not cand.mic_key
    assert cand.s_key.cmac(b"abc") == CmacKey(device.keys.s_nwk_s_int_key).cmac(b"abc")
    assert cand.mic_key.cmac(b"abc") == CmacKey(device.keys.f_nwk_s_int_key).cmac(b"abc")
