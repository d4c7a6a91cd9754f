"""Beacons for tests: deterministic per seed, with the nulls and edge values real SDKs send."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

OSES = ("LINUX", "WINDOWS", "MAC_OS", "ANDROID", None, "")
BROWSERS = ("CHROME", "FIREFOX", "SAFARI", None)
CONNECTIONS = ("ETHERNET", "WIFI", "CELLULAR", None)
RENDITIONS = (("4000", "1 of 2"), ("800", "2 of 2"))


def maybe(rng: random.Random, value: object, null_share: float = 0.1) -> object:
    return None if rng.random() < null_share else value


def beacon(customer_id: str, session: dict, time: datetime, rng: random.Random) -> dict:
    """One beacon of `session` (a dict of its fixed columns) at `time`."""
    compatible = session["P2pCompatible"]
    source = "p2p" if compatible and rng.random() < 0.7 else "cdn"
    bitrate, representation = rng.choice(RENDITIONS)
    total = float(rng.randint(0, 25000))
    p2p = float(rng.randint(0, int(total))) if source == "p2p" else 0.0
    playing = float(rng.choice((5000, 5000, 4000, 0)))
    return {
        **session,
        "__time": time,
        "CustomerId": customer_id,
        "Source": source,
        "Bitrate": bitrate,
        "RepresentationId": representation,
        "CdnDownlinkThroughput": total - p2p,
        "P2pDownlinkThroughput": p2p,
        "TotalDownlinkThroughput": total,
        "ViewingTime": maybe(rng, playing / 1000),
        "PlayingTime": maybe(rng, playing),
        "BufferingTime": maybe(rng, float(rng.choice((0, 0, 0, 250, 1000)))),
        "BufferHealth": maybe(rng, float(rng.randint(0, 30000))),
        "AggregateBufferFillingRate": maybe(rng, round(rng.uniform(0.5, 3.0), 3)),
        "DroppedFrames": maybe(rng, rng.choice((0, 0, 1, 2, 7))),
        "CdnResponseTime": maybe(rng, round(rng.uniform(20, 400), 2), 0.3),
        "P2pResponseTime": (
            maybe(rng, round(rng.uniform(5, 90), 2), 0.3) if source == "p2p" else None
        ),
        "PlayerState": rng.choice(("playing", "playing", "buffering", "paused")),
        "StartingTime": maybe(rng, float(rng.randint(300, 4000)), 0.3),
    }


def session_profile(index: int, channels: list[str], rng: random.Random) -> dict:
    channel = channels[index % len(channels)]
    return {
        "SessionId": f"sess-{index}-{rng.getrandbits(24):06x}",
        "ChannelId": channel,
        "StreamId": f"{channel}-stream-{index % 2}",
        "MaskedStreamUri": maybe(rng, f"https://cdn.example/{channel}/{index % 2}.m3u8?t=***"),
        "StreamState": "live",
        "P2pCompatible": rng.choice((True, True, True, False, None)),
        "OsName": rng.choice(OSES),
        "BrowserName": rng.choice(BROWSERS),
        "ConnectionType": rng.choice(CONNECTIONS),
    }


def scenario(customer_id: str, now: datetime, seed: int = 1, sessions: int = 14) -> list[dict]:
    """Dense beacons over the last 15 minutes (the last one in the `live` window) plus sparse
    ones over the last 29 days, for every window of the legacy API."""
    rng = random.Random(seed)
    channels = ["ch-1", "ch-2", "ch three"]
    profiles = [session_profile(i, channels, rng) for i in range(sessions)]
    end = now - timedelta(seconds=5)  # the last complete 5 s window holds __time in [end, now)
    beacons = []
    for i, profile in enumerate(profiles):
        length = rng.randint(10, 180)
        stop = 0 if i % 3 == 0 else rng.randint(0, 60)
        for step in range(stop, stop + length):
            beacons.append(beacon(customer_id, profile, end - timedelta(seconds=5 * step), rng))
    for _ in range(60):
        profile = rng.choice(profiles)
        ago = timedelta(seconds=5 * rng.randint(200, 29 * 17280))
        beacons.append(beacon(customer_id, profile, end - ago, rng))
    # one (SessionId, __time) per beacon: a later duplicate would be dropped by the store
    unique = {(b["SessionId"], b["__time"]): b for b in beacons}
    return list(unique.values())


def wire(beacon: dict) -> dict:
    """The JSON form: `__time` as epoch milliseconds, nulls dropped (absent = null)."""
    out = {k: v for k, v in beacon.items() if v is not None}
    out["__time"] = int(beacon["__time"].timestamp() * 1000)
    return out


def at(now: datetime, seconds_ago: int) -> datetime:
    return (now - timedelta(seconds=seconds_ago)).astimezone(UTC)


AS_NAMES = ("TELEFONICA", "Comcast Cable", "DEUTSCHE TELEKOM AG", None, "")
STREAM_STATES = ("live", "live", "vod", "dvr", None)
VIDEO_SIZES = ((1920, 1080), (1280, 720), (640, 360), (0, 0), None)


def v1_scenario(customer_id: str, now: datetime, seed: int = 1, sessions: int = 14) -> list[dict]:
    """`scenario` plus the columns only the v1 metrics read: AsName/Asn and StreamState per
    session, video and viewport sizes per beacon (some optimal, some not, some unknown)."""
    rng = random.Random(seed * 7919)
    beacons = scenario(customer_id, now, seed=seed, sessions=sessions)
    per_session: dict[str, dict] = {}
    for b in beacons:
        fixed = per_session.setdefault(b["SessionId"], {
            "AsName": rng.choice(AS_NAMES),
            "StreamState": rng.choice(STREAM_STATES),
            # "big": a viewport 50 % larger than the video and never the top rendition
            "kind": rng.choice(("mixed", "mixed", "big")),
        })
        b.update({k: v for k, v in fixed.items() if k != "kind"})
        if fixed["kind"] == "big":
            b["Bitrate"], b["RepresentationId"] = RENDITIONS[1]
        if b["AsName"]:
            b["Asn"] = f"AS{len(b['AsName'])}"
        size = rng.choice(VIDEO_SIZES)
        if size is not None:
            b["VideoResolutionWidth"], b["VideoResolutionHeight"] = size
            scale = 1.5 if fixed["kind"] == "big" else rng.choice((1.0, 1.005, 1.5, 0.5))
            b["ViewportWidth"] = int(size[0] * scale) if rng.random() > 0.1 else None
            b["ViewportHeight"] = int(size[1] * scale) if rng.random() > 0.1 else None
    return beacons
