from offline.sandbox.server import Sandbox

__all__ = ["Sandbox"]
