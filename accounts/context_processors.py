from accounts import signin


def sign_in(request) -> dict:
    """Whether the sign-in page offers "Sign in with Microsoft" (no database read)."""
    return {"microsoft_sign_in": signin.is_enabled()}
