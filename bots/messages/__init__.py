"""Messages: the values that flow between the shells and the conversation layer, none of them a
screen. Update parsing (incoming.py), the reply kinds and their JSON form (replies.py), Telegram's
limits (limits.py) and the catalogues of texts (catalogue.py)."""
