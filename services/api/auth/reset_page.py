"""The page the password reset e-mail links to (``GET /auth/password-reset/confirm?token=``).

A link in an e-mail is opened with GET; the reset itself is ``POST`` JSON. This page asks for
the new password and posts it with the token from its own address. The token is read by the
script from ``location`` and never written into the HTML, so nothing in the address can inject
markup; the page is not cached and sends no referrer, so the token leaves no trace elsewhere.
"""

from __future__ import annotations

from services.api.auth.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Choose a new password</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}
input,button{{font-size:1rem;padding:.4rem;margin:.3rem 0;width:100%}}</style></head>
<body>
<h1>Choose a new password</h1>
<form id="reset">
  <label>New password
    <input id="password" type="password" autocomplete="new-password" required
           minlength="{MIN_PASSWORD_CHARS}" maxlength="{MAX_PASSWORD_CHARS}"></label>
  <label>Once more
    <input id="again" type="password" autocomplete="new-password" required></label>
  <button type="submit">Set the new password</button>
</form>
<p id="result" role="status"></p>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const result = document.getElementById("result");
if (!token) result.textContent = "This link has no reset token: ask for a new e-mail.";
document.getElementById("reset").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const password = document.getElementById("password").value;
  if (password !== document.getElementById("again").value) {{
    result.textContent = "The two passwords differ.";
    return;
  }}
  const answer = await fetch(location.pathname, {{
    method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{token: token, new_password: password}}),
  }});
  if (answer.status === 204) {{
    document.getElementById("reset").hidden = true;
    result.textContent = "Your password is changed: sign in with it.";
  }} else {{
    const body = await answer.json().catch(() => ({{}}));
    const detail = typeof body.detail === "string" ? body.detail : "check the password";
    result.textContent = "Not changed: " + detail + ".";
  }}
}});
</script>
</body>
</html>
"""
