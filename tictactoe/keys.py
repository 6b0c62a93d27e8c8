"""The typed keys of everything the application holds."""

from aiohttp import web

from .addresses import ClientAddresses, OpenPolls
from .config import Config
from .hub import Hub
from .metrics import Metrics
from .service import GameService
from .store import EventStore

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", EventStore)
HUB = web.AppKey("hub", Hub)
SERVICE = web.AppKey("service", GameService)
METRICS = web.AppKey("metrics", Metrics)
STARTUP = web.AppKey("startup", dict)  # what start-up found: restored games, time taken
ADDRESSES = web.AppKey("addresses", ClientAddresses)  # who a request comes from (trusted proxies)
POLLS = web.AppKey("polls", OpenPolls)  # open long polls and streams per address
