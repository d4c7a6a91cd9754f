"""Deterministic synthetic player beacons (CONTRACT §3) for demo data, benchmarks and tests."""

from __future__ import annotations

import math
import random
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WINDOW_SECONDS = 5
PEAK_HOUR_UTC = 20
MIN_LIFETIME_S, MAX_LIFETIME_S = 180, 3600
# Lifetimes are log-uniform, so concurrency = arrival rate × this mean (Little's law).
MEAN_LIFETIME_S = (MAX_LIFETIME_S - MIN_LIFETIME_S) / math.log(MAX_LIFETIME_S / MIN_LIFETIME_S)
NOT_COMPATIBLE_SHARE = 0.08
P2P_WINDOW_SHARE = 0.93
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COLUMNS = (
    "__time", "CustomerId", "ChannelId", "StreamId", "MaskedStreamUri", "StreamState", "Bitrate",
    "RepresentationId", "SessionId", "Source", "P2pCompatible", "PlayerState",
    "VideoResolutionWidth", "VideoResolutionHeight", "ViewportWidth", "ViewportHeight",
    "CdnDownlinkThroughput", "P2pDownlinkThroughput", "TotalDownlinkThroughput", "ViewingTime",
    "StartingTime", "BufferHealth", "DownlinkSpeed", "NodeId", "ReceiveFromNodeId", "Latitude",
    "Longitude", "ResponseCdn", "ContentSteeringPathway", "CdnResponseTime", "P2pResponseTime",
    "DroppedFrames", "PlayingTime", "BufferingTime", "AggregateBufferFillingRate",
    "ConnectionType", "OsName", "BrowserName", "PlayerName", "AppName", "ConnectionStatus",
    "NatType", "UplinkCapacity", "Ip", "Asn", "AsName", "Country",
)  # fmt: skip


@dataclass(frozen=True)
class DemoCustomer:
    """A demo tenant and the size of its audience."""

    customer_id: str
    region: str  # americas|emea|apac
    tier: str  # lite|advanced
    channels: int
    peak_sessions: int  # concurrent sessions at PEAK_HOUR_UTC


DEMO_CUSTOMERS: tuple[DemoCustomer, ...] = (
    DemoCustomer("demo-sports", "emea", "advanced", channels=6, peak_sessions=240),
    DemoCustomer("demo-news", "americas", "lite", channels=4, peak_sessions=120),
    DemoCustomer("demo-kids", "apac", "advanced", channels=3, peak_sessions=60),
)

_CHANNEL_NAMES = {
    "demo-sports": ("football-live", "tennis", "motorsport", "basketball", "cycling", "rugby"),
    "demo-news": ("world-news", "business", "politics", "weather"),
    "demo-kids": ("cartoons", "learning", "family-movies"),
}
# (label, StreamState, audience weight): the main stream carries most viewers.
_STREAM_KINDS = (("main", "live", 75), ("backup", "live", 15), ("replay", "dvr", 10))
# Renditions best first: (Bitrate kbps, VideoResolutionWidth, VideoResolutionHeight).
_LADDERS = (
    ((6000, 1920, 1080), (4000, 1280, 720), (2000, 854, 480), (800, 640, 360)),
    ((4500, 1920, 1080), (2500, 1280, 720), (1000, 854, 480)),
)
# (weight, OsName, BrowserName, PlayerName, app kind, is mobile)
_DEVICES = (
    (30, "WINDOWS", "CHROME", "hls.js", "web", False),
    (8, "WINDOWS", "EDGE", "hls.js", "web", False),
    (6, "WINDOWS", "FIREFOX", "Video.js", "web", False),
    (10, "MAC_OS", "SAFARI", "Video.js", "web", False),
    (6, "MAC_OS", "CHROME", "hls.js", "web", False),
    (4, "LINUX", "FIREFOX", "Shaka Player", "web", False),
    (3, "LINUX", "CHROME", "Shaka Player", "web", False),
    (18, "ANDROID", "ANDROID", "ExoPlayer", "android", True),
    (4, "ANDROID", "CHROME", "hls.js", "web", True),
    (11, "IOS", "SAFARI", "AVPlayer", "ios", True),
)
_VIEWPORTS = {
    False: ((1920, 1080), (1280, 720), (1536, 864), (2560, 1440), (960, 540), (640, 360)),
    True: ((390, 219), (412, 232), (844, 390), (915, 412), (1280, 720)),
}
# ConnectionType: (weight desktop, weight mobile, downlink kbps range, uplink kbps range)
_CONNECTIONS = {
    "ETHERNET": (40, 0, (15000, 120000), (5000, 50000)),
    "WIFI": (60, 55, (5000, 60000), (2000, 20000)),
    "CELLULAR": (0, 45, (1500, 25000), (500, 8000)),
}
# region -> (Country, latitude, longitude, weight, ((Asn, AsName, Ip /16 prefix), ...))
_GEO = {
    "emea": (
        ("FR", 48.9, 2.3, 25, (("AS3215", "Orange S.A.", "90.12"),
                               ("AS12322", "Free SAS", "82.64"))),
        ("DE", 52.5, 13.4, 25, (("AS3320", "Deutsche Telekom AG", "91.0"),
                                ("AS3209", "Vodafone GmbH", "88.64"))),
        ("GB", 51.5, -0.1, 25, (("AS2856", "British Telecommunications PLC", "86.128"),
                                ("AS5089", "Virgin Media Limited", "82.2"))),
        ("ES", 40.4, -3.7, 15, (("AS3352", "Telefonica de Espana", "83.32"),)),
        ("NL", 52.4, 4.9, 10, (("AS1136", "KPN B.V.", "77.160"),)),
    ),
    "americas": (
        ("US", 40.7, -74.0, 35, (("AS7922", "Comcast Cable Communications", "73.0"),
                                 ("AS701", "Verizon Business", "71.160"))),
        ("US", 34.1, -118.2, 25, (("AS7018", "AT&T Services", "99.0"),
                                  ("AS20115", "Charter Communications", "76.80"))),
        ("BR", -23.5, -46.6, 15, (("AS28573", "Claro NXT", "177.32"),)),
        ("CA", 43.7, -79.4, 15, (("AS812", "Rogers Communications", "99.224"),)),
        ("MX", 19.4, -99.1, 10, (("AS8151", "Uninet S.A. de C.V.", "187.128"),)),
    ),
    "apac": (
        ("JP", 35.7, 139.7, 35, (("AS2516", "KDDI Corporation", "106.128"),
                                 ("AS4713", "NTT Communications", "153.0"))),
        ("AU", -33.9, 151.2, 20, (("AS1221", "Telstra", "101.160"),)),
        ("IN", 19.1, 72.9, 20, (("AS55836", "Reliance Jio", "49.32"),)),
        ("SG", 1.3, 103.8, 10, (("AS9506", "Singtel Fibre", "118.200"),)),
        ("KR", 37.6, 127.0, 15, (("AS4766", "Korea Telecom", "175.192"),)),
    ),
}  # fmt: skip
_CDNS = (("akamai", "CDN-A", 50), ("cloudfront", "CDN-B", 30), ("fastly", "CDN-C", 20))
_NAT_TYPES = ("FULL_CONE", "RESTRICTED_CONE", "PORT_RESTRICTED_CONE", "SYMMETRIC")


@dataclass(frozen=True)
class _Stream:
    """Static columns of one stream and its rendition ladder."""

    columns: dict
    ladder: tuple[tuple[int, int, int], ...]
    weight: float


def _weighted(rng: random.Random, items: tuple, weights: tuple[float, ...]):
    """One item drawn with the given weights."""
    return rng.choices(items, weights)[0]


def _catalog(customer: DemoCustomer, seed: int) -> tuple[_Stream, ...]:
    """Channels of a customer (Zipf-popular) with 1–3 streams each."""
    rng = random.Random(f"{seed}:{customer.customer_id}:catalog")
    names = _CHANNEL_NAMES.get(customer.customer_id, ())
    streams = []
    for index in range(customer.channels):
        channel = names[index] if index < len(names) else f"channel-{index + 1}"
        for label, state, weight in _STREAM_KINDS[: rng.randint(1, 3)]:
            path = channel if label == "main" else f"{channel}/{label}"
            columns = {
                "CustomerId": customer.customer_id,
                "ChannelId": channel,
                "StreamId": f"0x{rng.getrandbits(32):08x}",
                "MaskedStreamUri": f"https://cdn.example.com/{path}/master.m3u8?token=***",
                "StreamState": state if rng.random() < 0.95 else "unknown",
            }
            ladder = _LADDERS[0] if rng.random() < 0.8 else _LADDERS[1]
            streams.append(_Stream(columns, ladder, weight / (index + 1)))
    return tuple(streams)


def _device_columns(rng: random.Random, customer: DemoCustomer) -> tuple[dict, bool]:
    """Device, network and location columns of one session, and whether it is mobile."""
    _, os_name, browser, player, app, mobile = _weighted(rng, _DEVICES, [d[0] for d in _DEVICES])
    kinds = tuple(_CONNECTIONS)
    kind = _weighted(rng, kinds, [_CONNECTIONS[k][1 if mobile else 0] for k in kinds])
    country, lat, lon, _, networks = _weighted(
        rng, _GEO[customer.region], [g[3] for g in _GEO[customer.region]]
    )
    asn, as_name, prefix = rng.choice(networks)
    width, height = rng.choice(_VIEWPORTS[mobile])
    up_lo, up_hi = _CONNECTIONS[kind][3]
    return {
        "ViewportWidth": width,
        "ViewportHeight": height,
        "Latitude": round(lat + rng.uniform(-0.5, 0.5), 1),
        "Longitude": round(lon + rng.uniform(-0.5, 0.5), 1),
        "ConnectionType": kind,
        "OsName": os_name,
        "BrowserName": browser,
        "PlayerName": player,
        "AppName": f"{customer.customer_id}-{app}",
        "UplinkCapacity": float(int(math.exp(rng.uniform(math.log(up_lo), math.log(up_hi))))),
        "Ip": f"{prefix}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "Asn": asn,
        "AsName": as_name,
        "Country": country,
    }, mobile


def _peer_columns(rng: random.Random, compatible: bool) -> tuple[dict, tuple[str, ...]]:
    """Peer-network columns of one session and the nodes it may receive from."""
    cdn, pathway, _ = _weighted(rng, _CDNS, [c[2] for c in _CDNS])
    columns = {"ResponseCdn": cdn, "ContentSteeringPathway": pathway, "Source": "cdn",
               "ReceiveFromNodeId": "no-node-id", "P2pDownlinkThroughput": 0.0}  # fmt: skip
    if not compatible:
        columns.update(NodeId="no-node-id", ConnectionStatus="DISABLED", NatType="UNKNOWN")
        return columns, ()
    nat = rng.choice(_NAT_TYPES)
    columns.update(
        NodeId=f"{rng.getrandbits(64):016x}",
        ConnectionStatus="RELAYED" if nat == "SYMMETRIC" else "CONNECTED",
        NatType=nat,
    )
    return columns, tuple(f"{rng.getrandbits(64):016x}" for _ in range(rng.randint(1, 3)))


def _rendition_switches(
    rng: random.Random, first: int, preferred: int, rungs: int, startup: int, windows: int
) -> list[tuple[int, int]]:
    """Window offsets where the session changes rendition, drifting towards `preferred`."""
    switches, current, offset = [], first, startup
    while True:
        offset += rng.randint(24, 240)
        if offset >= windows:
            return switches
        up = rng.random() < (0.7 if current > preferred else 0.3)
        nxt = max(0, min(rungs - 1, current - 1 if up else current + 1))
        if nxt != current:
            switches.append((offset, nxt))
            current = nxt


class _Session:
    """Precomputed profile and schedule of one playback session; `beacon` is the hot path."""

    __slots__ = (
        "w0", "w_end", "last", "templates", "tmpl", "kbit", "switches", "next_switch",
        "startup", "join_ms", "pause_from", "pause_to", "stops", "compatible", "p2p_from",
        "offload_lo", "peers", "speed", "cdn_rt", "p2p_rt", "health", "fill", "drops", "rebuf",
    )  # fmt: skip

    def __init__(self, rng: random.Random, customer: DemoCustomer, stream: _Stream, w0: int):
        lifetime_s = math.exp(rng.uniform(math.log(MIN_LIFETIME_S), math.log(MAX_LIFETIME_S)))
        windows = int(lifetime_s // WINDOW_SECONDS)
        self.w0, self.w_end, self.last = w0, w0 + windows, windows - 1
        self.compatible = rng.random() >= NOT_COMPATIBLE_SHARE
        device, mobile = _device_columns(rng, customer)
        peer, self.peers = _peer_columns(rng, self.compatible)
        self._schedule(rng, windows)
        self._quality(rng, device, mobile)
        base = dict.fromkeys(COLUMNS)
        base.update(stream.columns, **device, **peer, P2pCompatible=self.compatible)
        base["SessionId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.templates, rungs = [], len(stream.ladder)
        for rank, (bitrate, width, height) in enumerate(stream.ladder):
            tmpl = base.copy()
            tmpl.update(Bitrate=str(bitrate), RepresentationId=f"{rank + 1} of {rungs}",
                        VideoResolutionWidth=width, VideoResolutionHeight=height)  # fmt: skip
            self.templates.append(tmpl)
        ladder = [rung[0] for rung in stream.ladder]
        fitting = [i for i, bitrate in enumerate(ladder) if bitrate * 1.4 <= self.speed]
        preferred = fitting[0] if fitting else len(ladder) - 1
        first = min(len(ladder) - 1, preferred + rng.randint(0, 1))
        self.switches = _rendition_switches(
            rng, first, preferred, len(ladder), self.startup, windows
        )[::-1]
        self._use(first)

    def _schedule(self, rng: random.Random, windows: int) -> None:
        """Join time, start-up windows, an optional pause, the end and the peer-network join."""
        self.join_ms = float(int(min(15000.0, rng.lognormvariate(math.log(1500), 0.7))))
        self.startup = int(self.join_ms // 5000)  # windows spent buffering before playback
        self.pause_from = self.pause_to = -1
        if rng.random() < 0.25:
            self.pause_from = rng.randint(self.startup + 2, windows - 2)
            self.pause_to = min(windows - 1, self.pause_from + rng.randint(6, 60))
        self.stops = rng.random() < 0.5
        self.p2p_from = self.startup + rng.randint(2, 6)
        self.offload_lo = rng.uniform(0.5, 0.7)

    def _quality(self, rng: random.Random, device: dict, mobile: bool) -> None:
        """Per-session levels around which each window's QoE values vary."""
        lo, hi = _CONNECTIONS[device["ConnectionType"]][2]
        self.speed = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        self.cdn_rt = rng.uniform(30.0, 150.0)
        self.p2p_rt = rng.uniform(15.0, 90.0)
        self.health = rng.uniform(8000.0, 30000.0)
        self.fill = rng.uniform(1.2, 2.7)
        self.drops = 9.0 if mobile else 4.0
        self.rebuf = 0.05 if device["ConnectionType"] == "CELLULAR" else 0.02

    def _use(self, rung: int) -> None:
        """Switch to rendition `rung` (0 = best) and schedule the next switch."""
        self.tmpl = self.templates[rung]
        self.kbit = int(self.tmpl["Bitrate"]) * WINDOW_SECONDS
        self.next_switch = self.switches[-1][0] if self.switches else 1 << 62

    def _playback(self, off: int, rnd: Callable[[], float]) -> tuple:
        """(PlayerState, PlayingTime ms, BufferingTime ms, download factor, BufferHealth ms)."""
        if off < self.startup:  # start-up is join time, not rebuffering
            return "buffering", 0.0, 0.0, 1.5 + rnd(), 2000.0 * rnd()
        if self.pause_from <= off < self.pause_to:
            return "paused", 0.0, 0.0, 0.2 * rnd(), self.health
        if off == self.last and self.stops:
            played = float(int(5000 * rnd()))
            return "stopped", played, 0.0, played / 5000, self.health * rnd()
        if off > self.startup and rnd() < self.rebuf:
            stalled = float(int(300 + 3700 * rnd()))
            return "buffering", 5000.0 - stalled, stalled, 1.1 + 0.4 * rnd(), 1500.0 * rnd()
        return "playing", 5000.0, 0.0, 0.9 + 0.25 * rnd(), self.health * (0.8 + 0.4 * rnd())

    def beacon(self, w: int, time: datetime, rnd: Callable[[], float]) -> dict:
        """The beacon of window `w` (ending at `time`)."""
        off = w - self.w0
        while off >= self.next_switch:
            self._use(self.switches.pop()[1])
        state, played, stalled, factor, health = self._playback(off, rnd)
        total = float(int(self.kbit * factor))
        b = self.tmpl.copy()
        b["__time"] = time
        b["PlayerState"] = state
        p2p = 0.0
        if self.compatible and off >= self.p2p_from and rnd() < P2P_WINDOW_SHARE:
            p2p = float(int(total * (self.offload_lo + 0.15 * rnd())))
            b["Source"] = "p2p"
            b["P2pDownlinkThroughput"] = p2p
            b["ReceiveFromNodeId"] = self.peers[int(rnd() * len(self.peers))]
            b["P2pResponseTime"] = int(self.p2p_rt * (0.6 + 0.8 * rnd()) * 10) / 10
        b["CdnDownlinkThroughput"] = total - p2p
        b["TotalDownlinkThroughput"] = total
        b["CdnResponseTime"] = int(self.cdn_rt * (0.7 + 0.6 * rnd()) * 10) / 10 if total else None
        b["ViewingTime"] = played / 1000
        b["PlayingTime"] = played
        b["BufferingTime"] = stalled
        b["StartingTime"] = self.join_ms if off >= self.startup else None
        b["BufferHealth"] = float(int(health))
        b["DownlinkSpeed"] = float(int(self.speed * (0.8 + 0.4 * rnd())))
        b["AggregateBufferFillingRate"] = (
            0.5 + 0.5 * rnd() if state == "buffering" else int(self.fill * (90 + 20 * rnd())) / 100
        )
        b["DroppedFrames"] = int(rnd() ** 6 * self.drops) if played else 0
        return b


def daily_curve(epoch_s: float) -> float:
    """Relative arrival rate in (0, 1] at a UTC time, 1 at PEAK_HOUR_UTC."""
    hour = (epoch_s % 86400) / 3600
    return 0.15 + 0.85 * ((1 + math.cos(2 * math.pi * (hour - PEAK_HOUR_UTC) / 24)) / 2) ** 2


def _sessions(
    customer: DemoCustomer, streams: tuple[_Stream, ...], seed: int, hours: range
) -> Iterator[_Session]:
    """Sessions arriving in each UTC hour of `hours`, in arrival order (thinned Poisson process)."""
    peak_rate = customer.peak_sessions / MEAN_LIFETIME_S
    weights = [s.weight for s in streams]
    for hour in hours:
        # One RNG per hour: a session does not depend on the requested range.
        rng = random.Random(f"{seed}:{customer.customer_id}:{hour}")
        arrival, hour_end = hour * 3600.0, (hour + 1) * 3600.0
        while (arrival := arrival + rng.expovariate(peak_rate)) < hour_end:
            if rng.random() < daily_curve(arrival):
                stream = rng.choices(streams, weights)[0]
                yield _Session(rng, customer, stream, int(arrival // WINDOW_SECONDS) + 1)


def _window(moment: datetime) -> int:
    """Index of the first 5 s window end at or after `moment` (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return -((EPOCH - moment) // timedelta(seconds=WINDOW_SECONDS))


def generate_beacons(
    customer: DemoCustomer, start: datetime, end: datetime, seed: int = 0
) -> Iterator[dict]:
    """Beacons of sessions active in [start, end): one per session per 5 s window, in time order."""
    first_w, end_w = _window(start), _window(end)
    if first_w >= end_w:
        return
    streams = _catalog(customer, seed)
    first_hour = (first_w * WINDOW_SECONDS - MAX_LIFETIME_S - WINDOW_SECONDS) // 3600
    last_hour = (end_w * WINDOW_SECONDS - 1) // 3600
    pending = _sessions(customer, streams, seed, range(first_hour, last_hour + 1))
    upcoming = next(pending, None)
    active: list[_Session] = []
    salt = zlib.crc32(customer.customer_id.encode()) << 40 ^ seed << 72
    for w in range(first_w, end_w):
        while upcoming is not None and upcoming.w0 <= w:
            active.append(upcoming)
            upcoming = next(pending, None)
        active = [s for s in active if s.w_end > w]
        # Per-window noise: the same window gives the same beacons whatever the range.
        rnd = random.Random(salt ^ w).random
        time = EPOCH + timedelta(seconds=w * WINDOW_SECONDS)
        for session in active:
            yield session.beacon(w, time, rnd)


def to_json_ready(beacon: dict) -> dict:
    """A copy of `beacon` with `__time` as epoch milliseconds, for the JSON ingest API."""
    ready = dict(beacon)
    ready["__time"] = (beacon["__time"] - EPOCH) // timedelta(milliseconds=1)
    return ready
