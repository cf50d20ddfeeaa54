from bots.sandbox.server import Sandbox

__all__ = ["Sandbox"]
