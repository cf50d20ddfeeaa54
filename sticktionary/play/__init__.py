"""`sticktionary play`: a Telegram-like chat with the bots in the browser, and a live dashboard."""
