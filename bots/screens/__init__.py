"""Screens, one module per screen: each turns a view the engine returns (a task, a review round,
standings) into replies, in the player's language. No engine calls and no database rows here: the
handlers (bots/handlers/) ask the engine and pass the values in; delivery (bots/delivery/) keeps
live screens up to date in the chat."""
