"""The asyncio front end: AsyncCarrierClient (aiohttp), AsyncRouter, AsyncRedisCache.

Needs the extra ``smsroute[async]`` (aiohttp). The names are exported from
:mod:`smsroute` itself and loaded lazily, so ``import smsroute`` never
imports aiohttp.
"""
