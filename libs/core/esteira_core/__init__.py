"""Esteira's shared core: everything that more than one service needs, written once."""
