def expiry_overview():
    return {"counts": {"expired": 0, "warning": 0, "valid": 0}, "entries": []}
