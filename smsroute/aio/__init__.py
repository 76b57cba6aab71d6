"""The asyncio front end: drivers of the decision core that wait on an event loop."""
