"""Human or machine: who fetched a pixel or followed a link.

Machines: image proxies that fetch every image on delivery or display (Gmail's
GoogleImageProxy, Yahoo's proxy, Apple Mail Privacy Protection), link scanners that
follow every link (Microsoft Defender Safe Links / BingPreview, Proofpoint, Mimecast,
Barracuda, ...), headless browsers and HTTP libraries, empty user agents, and anything
within a few seconds of sending (scanners run at delivery). Apple MPP sends a bare
`Mozilla/5.0` user agent with nothing after it: real browsers and mail apps always add
their engine. A heuristic, deliberately on the machine side: a machine open counts as an
event but never notifies.
"""

from __future__ import annotations

import re

MACHINE_AGENTS = re.compile(
    r"googleimageproxy|ggpht\.com|yahoomailproxy|yahoo! slurp|bingpreview|"
    r"safelinks|microsoft office protocol discovery|ms-office|proofpoint|mimecast|"
    r"barracuda|symantec|messagelabs|forcepoint|trendmicro|sophos|fireeye|"
    r"headlesschrome|phantomjs|python-requests|python-urllib|aiohttp|httpx|curl/|wget/|"
    r"go-http-client|java/|okhttp|libwww|scrapy|bot\b|crawler|spider|preview|scanner|"
    r"facebookexternalhit|slackbot|linkedinbot|twitterbot|whatsapp|skypeuripreview",
    re.IGNORECASE,
)
BARE_MOZILLA = re.compile(r"^\s*Mozilla/5\.0\s*$")
PREFETCH_WINDOW_SECONDS = 3.0


def classify(user_agent: str | None, seconds_since_sent: float | None) -> str:
    agent = (user_agent or "").strip()
    if not agent or MACHINE_AGENTS.search(agent) or BARE_MOZILLA.match(agent):
        return "machine"
    if seconds_since_sent is not None and seconds_since_sent < PREFETCH_WINDOW_SECONDS:
        return "machine"
    return "human"
