//! Accessibility checks for the browser tests (issue 6: "keyboard usable, labelled inputs,
//! readable contrast, usable on a phone-width screen").
//!
//! The pages are for people who must understand what they allow an agent to do, so these are
//! asserted on every page the browser tests visit rather than reviewed by eye once:
//! - [`check_page`]: every visible form control has an accessible name; all visible text meets
//!   WCAG 2.x contrast (4.5:1, or 3:1 for large text) against its effective background; at
//!   390 px wide the page does not scroll sideways. Run at desktop width and at phone width.
//! - [`tab_walk`]: pressing Tab from the top of a freshly loaded page focuses every focusable
//!   element in document order, each with a visible focus indicator.
//!
//! The checks run as JavaScript in the page (`execute`) and return what fails, so a failure
//! names the element, its colours and its ratio. A test below feeds them a page made to fail
//! each one, so a passing page means something.

use crate::browser::{DESKTOP, PHONE};
use fantoccini::Client;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::Value;

/// Shared JavaScript: `desc(el)` names an element for failure messages, `pos(el)` is its
/// position in document order (the identity the Tab walk compares).
const COMMON: &str = r#"
const pos = (el) => Array.prototype.indexOf.call(document.getElementsByTagName('*'), el);
const desc = (el) => {
  let d = el.tagName.toLowerCase();
  if (el.id) d += '#' + el.id;
  for (const a of ['name', 'type', 'value', 'href']) {
    const v = el.getAttribute(a);
    if (v !== null && !(a === 'value' && v.length > 40)) d += `[${a}=${v}]`;
  }
  const t = (el.innerText || '').trim().replace(/\s+/g, ' ').slice(0, 40);
  return `${d} @${pos(el)}` + (t ? ` "${t}"` : '');
};
const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
"#;

/// Visible controls without an accessible name.
const UNLABELLED: &str = r#"
const bad = [];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.tagName === 'INPUT' && ['hidden', 'submit', 'button', 'reset', 'image'].includes(el.type)) continue;
  if (!shown(el)) continue;
  const text = (n) => n && n.textContent.trim() !== '';
  const named = [...(el.labels || [])].some(text)
    || (el.getAttribute('aria-label') || '').trim() !== ''
    || (el.getAttribute('aria-labelledby') || '').split(/\s+/).some((id) => text(document.getElementById(id)));
  if (!named) bad.push(desc(el));
}
return bad;
"#;

/// Visible text below the WCAG AA contrast ratio against its effective background.
const LOW_CONTRAST: &str = r#"
const rgba = (c) => {
  const m = c.match(/rgba?\(([^)]*)\)/);
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter((s) => s !== '').map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
// `top` painted over the opaque `bottom`.
const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
// The background the text is painted on: the element's and its ancestors' background colours,
// composited from the first opaque one (or the white canvas) up.
const background = (el) => {
  const layers = [];
  for (let n = el; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  return layers.reduceRight((acc, c) => over(c, acc), [255, 255, 255, 1]);
};
const luminance = (c) => {
  const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
const bad = [];
for (const el of document.body.querySelectorAll('*')) {
  if (['SCRIPT', 'STYLE', 'OPTION'].includes(el.tagName)) continue;
  const direct = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
  if (!direct || !shown(el)) continue;
  const s = getComputedStyle(el);
  const bg = background(el);
  const fg = over(rgba(s.color), bg);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  const need = large ? 3 : 4.5;
  if (ratio < need) bad.push(`${desc(el)}: ${hex(fg)} on ${hex(bg)} is ${ratio.toFixed(2)}:1, needs ${need}:1`);
}
return bad;
"#;

/// Sideways scrolling: the viewport width, the page width, and what sticks out.
const OVERFLOW: &str = r#"
const w = window.innerWidth;
const out = [...document.body.querySelectorAll('*')]
  .filter((el) => shown(el) && el.getBoundingClientRect().right > w + 0.5
    && !(el.parentElement && el.parentElement.getBoundingClientRect().right > w + 0.5))
  .slice(0, 5).map((el) => `${desc(el)} ends at ${Math.round(el.getBoundingClientRect().right)}px`);
return [w, document.documentElement.scrollWidth, out];
"#;

/// The focused element (its position and description) and whether it shows a focus
/// indicator; `null` when nothing in the page has focus.
const FOCUSED: &str = r#"
const el = document.activeElement;
if (!el || el === document.body || el === document.documentElement) return null;
const s = getComputedStyle(el);
const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
return [pos(el), desc(el), ring];
"#;

/// What Tab should reach, in document order.
const FOCUSABLE: &str = r#"
const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
return [...document.querySelectorAll(sel)]
  .filter((el) => shown(el) && !el.disabled && el.tabIndex >= 0)
  .map((el) => [pos(el), desc(el)]);
"#;

async fn run(browser: &Client, script: &str) -> Value {
    browser
        .execute(&format!("{COMMON}\n{script}"), vec![])
        .await
        .unwrap_or_else(|e| panic!("a11y script failed: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Labels and contrast at desktop width, then labels, contrast and no sideways scrolling at
/// phone width (the window is put back to desktop size afterwards).
pub(crate) async fn check_page(browser: &Client, page: &str) {
    let failures = page_problems(browser).await;
    assert!(
        failures.is_empty(),
        "{page} is not accessible:\n{}",
        failures.join("\n")
    );
}

/// What [`check_page`] finds wrong, one line each.
pub(crate) async fn page_problems(browser: &Client) -> Vec<String> {
    let mut failures = Vec::new();
    for (width, height) in [DESKTOP, PHONE] {
        browser.set_window_size(width, height).await.unwrap();
        for (what, script) in [("unlabelled", UNLABELLED), ("low contrast", LOW_CONTRAST)] {
            for f in strings(&run(browser, script).await) {
                failures.push(format!("{width}px, {what}: {f}"));
            }
        }
        if (width, height) == PHONE {
            let v = run(browser, OVERFLOW).await;
            let (inner, scroll) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
            assert!(
                inner <= u64::from(PHONE.0),
                "the window did not narrow to phone width (innerWidth {inner})"
            );
            if scroll > inner {
                failures.push(format!(
                    "{width}px: scrolls sideways ({scroll}px wide): {:?}",
                    strings(&v[2])
                ));
            }
        }
    }
    browser.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    failures
}

/// Presses `key` (with Shift when `shift`) once.
pub(crate) async fn press(browser: &Client, key: Key, shift: bool) {
    let mut keys = KeyActions::new("keyboard".into());
    if shift {
        keys = keys.then(KeyAction::Down {
            value: Key::Shift.into(),
        });
    }
    keys = keys
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    if shift {
        keys = keys.then(KeyAction::Up {
            value: Key::Shift.into(),
        });
    }
    browser.perform_actions(keys).await.unwrap();
}

/// Whether the focused element matches the CSS selector `css`.
pub(crate) async fn focused_is(browser: &Client, css: &str) -> bool {
    browser
        .execute(
            "return !!document.activeElement && document.activeElement.matches(arguments[0]);",
            vec![Value::from(css)],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

/// Presses Tab from the top of a freshly loaded page until focus leaves the page or comes
/// back round, and asserts that it visited every focusable element in document order, each
/// showing a focus indicator. Focus is left on the last element.
pub(crate) async fn tab_walk(browser: &Client, page: &str) {
    let failures = tab_problems(browser).await;
    assert!(
        failures.is_empty(),
        "{page} is not keyboard usable:\n{}",
        failures.join("\n")
    );
}

/// What [`tab_walk`] finds wrong, one line each.
pub(crate) async fn tab_problems(browser: &Client) -> Vec<String> {
    let expected: Vec<String> = run(browser, FOCUSABLE)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[1].as_str().unwrap().to_owned())
        .collect();
    if expected.is_empty() {
        return vec!["nothing to focus".into()];
    }
    let mut visited: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..expected.len() + 3 {
        press(browser, Key::Tab, false).await;
        let v = run(browser, FOCUSED).await;
        if v.is_null() {
            break;
        }
        // Descriptions carry the document position, so they identify the element.
        let here = v[1].as_str().unwrap().to_owned();
        if visited.contains(&here) {
            break;
        }
        if !v[2].as_bool().unwrap() {
            failures.push(format!("no visible focus indicator on {here}"));
        }
        visited.push(here);
    }
    if visited != expected {
        failures.push(format!(
            "Tab order differs from document order:\n  Tab reached {visited:#?}\n  expected {expected:#?}"
        ));
    }
    failures
}

/// The checks find what they look for: a page with an unlabelled input, grey-on-white text, a
/// button without a focus indicator, a link taken out of the Tab order by a positive
/// `tabindex` elsewhere, and a box wider than a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_catch_a_page_made_to_fail_them() {
    let Some(chromium) = crate::browser::launch("a11y self-test").await else {
        return;
    };
    let browser = &chromium.browser;
    let page = concat!(
        "<!doctype html><html lang=en><meta name=viewport content='width=device-width'>",
        "<body style='margin:0'>",
        "<label for=ok>Named</label><input id=ok>",
        "<input id=nameless>",
        "<p id=faint style='color:#aaa'>Faint</p>",
        "<p id=large style='color:#888;font-size:24px'>Large enough</p>",
        "<div id=wide style='width:600px'>Wide</div>",
        "<button id=ringless style='outline:none'>Go</button>",
        "<a id=first href='#x'>First</a> <a id=jumps href='#y' tabindex=1>Jumps</a>",
        "</body></html>"
    );
    let url = format!("data:text/html,{}", urlencode(page));
    browser.goto(&url).await.unwrap();
    let found = page_problems(browser).await.join("\n");
    for expected in [
        "unlabelled: input#nameless",
        "low contrast: p#faint",
        "scrolls sideways",
        "div#wide",
    ] {
        assert!(found.contains(expected), "missed {expected}:\n{found}");
    }
    for unexpected in ["input#ok", "p#large", "label @"] {
        assert!(
            !found.contains(unexpected),
            "flagged {unexpected}:\n{found}"
        );
    }
    let found = tab_problems(browser).await.join("\n");
    assert!(
        found.contains("no visible focus indicator on button#ringless"),
        "{found}"
    );
    assert!(!found.contains("indicator on input#ok"), "{found}");
    assert!(found.contains("Tab order differs"), "{found}");
    browser.clone().close().await.unwrap();
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
