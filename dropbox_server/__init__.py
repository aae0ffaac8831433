"""Safe Report Drop Box server: the public reporting site and the staff API (aiohttp)."""
