import msgpack
import numpy as np
import pytest

from drima import protocol


def test_round_trip_scalars():
    rewards = np.array([1.5, -2.0, 18.0], np.float32)
    frame = protocol.encode(protocol.SCALARS, 3, 41, [protocol.to_bytes(rewards), 6.88])
    msg = protocol.decode(frame)
    assert (msg.kind, msg.sender, msg.step) == (protocol.SCALARS, 3, 41)
    np.testing.assert_array_equal(protocol.floats(msg.body[0]), rewards)
    assert msg.body[1] == pytest.approx(6.88)


def test_neighbour_payload_is_small():
    # K = 8 environment copies in one message: well under 64 bytes per copy.
    frame = protocol.encode(protocol.SCALARS, 11, 123456, [protocol.to_bytes(np.zeros(8)), 1.0])
    assert len(frame) / 8 < 8


def test_round_trip_result_and_action():
    body = [protocol.to_bytes(np.ones((4, 2))), protocol.to_bytes(np.arange(4)), protocol.to_bytes(np.zeros(4)), True,
            {"team": protocol.to_bytes(np.full(4, 2.5))}]
    msg = protocol.decode(protocol.encode(protocol.RESULT, protocol.SERVER_ID, 7, body))
    assert msg.body[3] is True
    np.testing.assert_array_equal(protocol.floats(msg.body[4]["team"]), [2.5] * 4)
    np.testing.assert_array_equal(protocol.floats(msg.body[1]), [0, 1, 2, 3])
    act = protocol.decode(protocol.encode(protocol.ACTION, 1, 7, [protocol.to_bytes(np.array([1, 0]), "<i4")]))
    assert np.frombuffer(act.body[0], "<i4").tolist() == [1, 0]


def test_round_trip_heartbeat():
    msg = protocol.decode(protocol.encode(protocol.HEARTBEAT, protocol.SERVER_ID, 12, {}))
    assert (msg.kind, msg.sender, msg.step, msg.body) == (protocol.HEARTBEAT, protocol.SERVER_ID, 12, {})


def test_sender_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown message kind"):
        protocol.encode("gossip", 0, 0, {})


V = protocol.PROTOCOL_VERSION


@pytest.mark.parametrize("frame, reason", [
    (b"\xc1\xff\x00garbage", "not msgpack"),
    (msgpack.packb({"a": 1}), "5-element array"),
    (msgpack.packb([V, "dri", 0, 0]), "5-element array"),
    (msgpack.packb([99, "dri", 0, 0, [b"", 0.0]]), "protocol version 99"),
    (msgpack.packb([V, "gossip", 0, 0, {}]), "unknown message kind"),
    (msgpack.packb([V, "dri", "zero", 0, [b"", 0.0]]), "integers"),
    (msgpack.packb([V, "dri", 0, -5, [b"", 0.0]]), "negative step"),
    (msgpack.packb([V, "dri", 0, 0, [b"abc", 0.0]]), "float32 bytes"),
    (msgpack.packb([V, "dri", 0, 0, [b"abcd", "mu"]]), "float32 bytes"),
    (msgpack.packb([V, "act", 0, 0, [1, 2]]), "action body"),
    (msgpack.packb([V, "act", 0, 0, [b"abcde"]]), "action body"),
    (msgpack.packb([V, "result", 0, 0, [b"", b"", b""]]), "result body"),
    (msgpack.packb([V, "result", 0, 0, [b"", b"", b"", False]]), "result body"),
    (msgpack.packb([V, "result", 0, 0, [b"", b"", b"", False, {"team": 1.0}]]), "result body"),
    (msgpack.packb([V, "act", 0, 0, [b"", 1]]), "action body"),
    (msgpack.packb([V, "hello", 0, 0, [1]]), "must be a map"),
    (b"", "not msgpack"),
    (msgpack.packb([V, "dri", 0, 0, [b"abcd", float("nan")]]), "finite"),
    (msgpack.packb([V, "dri", 0, 0, [b"abcd", 1e300]]), "finite"),
    (msgpack.packb([V, "dri", 0, 0, [np.array([1.0, np.nan], "<f4").tobytes(), 0.0]]), "finite"),
    (msgpack.packb([V, "dri", 0, 0, [np.array([3e38], "<f4").tobytes(), 0.0]]), "finite"),
    (msgpack.packb([V, "hb", 0, 0, []]), "must be a map"),
])
def test_decode_rejects_malformed(frame, reason):
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(frame)


def test_decode_rejects_oversized_frame_before_parsing():
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.decode(b"\x00" * (protocol.MAX_FRAME_BYTES + 1))


def test_decode_raises_only_protocol_error_on_random_bytes():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        frame = rng.integers(0, 256, size=rng.integers(0, 64), dtype=np.uint8).tobytes()
        try:
            protocol.decode(frame)
        except protocol.ProtocolError:
            pass
