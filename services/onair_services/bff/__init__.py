"""bff: the one place where a page's data is composed (liveinfo, chat, wallet, search)."""
