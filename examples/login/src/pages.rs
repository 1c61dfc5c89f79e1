//! The HTML pages. Every value that comes from a user is escaped.

use std::fmt::Write as _;

use axum::response::Html;
use session_axum::auth::SessionInfo;
use session_axum::core::Timestamp;
use session_axum::csrf::CsrfToken;
use session_axum::flash::Message;

/// A logged-in visitor: their name, and the CSRF token for the page's forms.
pub(crate) type Visitor<'a> = (&'a str, &'a CsrfToken);

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The flash messages, each in a paragraph classed by its level.
fn flash(messages: &[Message]) -> String {
    let mut out = String::new();
    for message in messages {
        let _ = write!(
            out,
            "<p class=\"flash {level}\" role=\"status\">{}</p>",
            escape(&message.content),
            level = message.level
        );
    }
    out
}

fn layout(
    title: &str,
    user: Option<Visitor<'_>>,
    messages: &[Message],
    body: &str,
) -> Html<String> {
    let nav = match user {
        Some((name, token)) => format!(
            r#"<nav><a href="/">Home</a> · <a href="/account">Account</a> · <a href="/sessions">My sessions</a> · <a href="/password">Change password</a>
<form method="post" action="/logout" class="inline">{}<button id="logout">Log out {}</button></form></nav>"#,
            token.hidden_input(),
            escape(name)
        ),
        None => r#"<nav><a href="/">Home</a> · <a href="/login">Log in</a></nav>"#.to_owned(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · session-axum login example</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }}
nav {{ margin-bottom: 2rem; }}
form.inline {{ display: inline; }}
label {{ display: block; margin: .5rem 0; }}
.flash {{ background: #eef; padding: .5rem 1rem; }}
.flash.success {{ background: #efe; }}
.flash.warning {{ background: #ffe; }}
.flash.error {{ background: #fee; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .25rem .75rem; border-bottom: 1px solid #ddd; text-align: left; }}
</style>
</head>
<body>
{nav}
<h1>{title}</h1>
{messages}
{body}
</body>
</html>
"#,
        title = escape(title),
        messages = flash(messages),
    ))
}

pub(crate) fn home(user: Option<Visitor<'_>>, messages: &[Message]) -> Html<String> {
    let body = match user {
        Some((name, _)) => {
            format!("<p>Signed in as <strong id=\"username\">{}</strong>.</p>", escape(name))
        }
        None => "<p>You are not signed in. <a href=\"/login\">Log in</a> to see your account.</p>"
            .to_owned(),
    };
    layout("Home", user, messages, &body)
}

pub(crate) fn login(next: &str, token: &CsrfToken, messages: &[Message]) -> Html<String> {
    let body = format!(
        r#"<form method="post" action="/login" id="login-form">
{token}
<input type="hidden" name="next" value="{next}">
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label><input name="remember" type="checkbox" value="on"> Remember me for 30 days</label>
<button type="submit" id="login">Log in</button>
</form>"#,
        token = token.hidden_input(),
        next = escape(next)
    );
    layout("Log in", None, messages, &body)
}

pub(crate) fn account(me: Visitor<'_>, messages: &[Message]) -> Html<String> {
    let body = format!(
        "<p id=\"welcome\">Welcome, {}. Only logged-in users see this page.</p>",
        escape(me.0)
    );
    layout("Account", Some(me), messages, &body)
}

pub(crate) fn sessions(me: Visitor<'_>, sessions: &[SessionInfo]) -> Html<String> {
    let mut rows = String::new();
    for info in sessions {
        let _ = write!(
            rows,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if info.current { " id=\"current-session\"" } else { "" },
            when(info.created_at),
            when(info.last_seen),
            when(info.expires_at),
            if info.current { "this device" } else { "" },
        );
    }
    let body = format!(
        r#"<p>{count} active session(s).</p>
<table>
<tr><th>Logged in</th><th>Last seen</th><th>Expires</th><th></th></tr>
{rows}
</table>
<form method="post" action="/logout-everywhere">{token}<p><button id="logout-everywhere">Log out everywhere</button></p></form>"#,
        count = sessions.len(),
        token = me.1.hidden_input()
    );
    layout("My sessions", Some(me), &[], &body)
}

/// For client-side sessions, which live only in browsers.
pub(crate) fn sessions_unavailable(me: Visitor<'_>) -> Html<String> {
    let body = "<p id=\"client-side\">Sessions are kept in the browser's cookie (client-side), so \
                the server cannot list them or end them before they expire. Log out here, and \
                change your password to make the other devices' sessions stop working.</p>";
    layout("My sessions", Some(me), &[], body)
}

pub(crate) fn password(me: Visitor<'_>, messages: &[Message]) -> Html<String> {
    let body = format!(
        r#"<form method="post" action="/password">
{token}
<label>Current password <input name="current" type="password" autocomplete="current-password" required></label>
<label>New password <input name="new" type="password" autocomplete="new-password" minlength="8" required></label>
<button type="submit" id="change-password">Change password</button>
</form>
<p>Changing the password logs out every other session.</p>"#,
        token = me.1.hidden_input()
    );
    layout("Change password", Some(me), messages, &body)
}

pub(crate) fn forbidden() -> Html<String> {
    layout(
        "Forbidden",
        None,
        &[],
        "<p>This form was refused: it came from another site, or the page it was sent from \
         is out of date. Go back, reload the page and try again.</p>",
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn when(timestamp: Timestamp) -> String {
    let seconds = timestamp.unix_seconds();
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_in_utc() {
        assert_eq!(when(Timestamp::from_unix_seconds(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(Timestamp::from_unix_seconds(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(when(Timestamp::from_unix_seconds(1_700_000_000)), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
