"""How the portal is pointed at our Microsoft cloud emulator (demo and tests)."""


def emulator_environment(description: dict) -> dict[str, str]:
    """Portal settings, as environment variables, for an emulator's `emulator.json`."""
    base = description["base_url"].rstrip("/")
    return {
        "MS_EMULATOR": "true",
        "MS_LOGIN_URL": base,
        "MS_DEFENDER_URL": f"{base}/defender",
        "MS_GRAPH_URL": f"{base}/graph",
        "MS_CA_BUNDLE": description["ca_path"],
        "MS_CLIENT_ID": description["client_id"],
        "MS_CLIENT_SECRET": description["client_secret"],
        "MS_EMULATOR_CONTROL_TOKEN": description["control_token"],
        "MS_STAFF_TENANT_ID": description["home_tenant"]["id"],
    }
