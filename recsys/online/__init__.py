"""The online user-state store: per user and per anonymous session, what happened seconds ago
(recent items with event type and time, queries, carts, purchases, country, a time-decayed interest
profile over categories and brands, a price band), in a Redis-protocol server. ``/feedback`` writes it
in the request path; ``/search``, ``/recommend`` and ``/suggest`` read it (docs/ONLINE.md)."""
