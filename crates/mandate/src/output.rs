//! Printing results as a readable table or as JSON (`--json`).

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use mandate_server::admin::page::Page;
use serde::Serialize;

/// Prints rows as a table with `headers`, or the serialisable `items` as a JSON array.
pub fn print<T: Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("(none)");
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
    for r in rows {
        table.add_row(r);
    }
    println!("{table}");
    Ok(())
}

/// Prints one page of a listing as [`print`] does, one table row per item from `row`, and
/// tells on standard error how to ask for the next page when there is one (standard output
/// keeps only the page, so `--json` stays the API's body).
pub fn print_page<T: Serialize>(
    json: bool,
    page: &Page<T>,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    print(
        json,
        &page.items,
        headers,
        page.items.iter().map(row).collect(),
    )?;
    if let Some(cursor) = &page.next {
        eprintln!("more follow: run again with --after {cursor}");
    }
    Ok(())
}

/// Prints a single created object.
pub fn created<T: Serialize>(json: bool, item: &T, text: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(item)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

/// A unix time, or `-`.
pub fn time(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_string())
}
