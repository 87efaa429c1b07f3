//! The matrix as one standalone HTML page: inline CSS and JS, no external asset, so it works from
//! file:// and as a CI artifact. A family filter and a "differs only" checkbox hide rows with the
//! `hidden` attribute; the state is read from and written to the URL fragment
//! (`report.html#family=close&differs`), so a link (or a headless browser's `--dump-dom`) shows
//! the same view.

use super::claims::{Checked, Verdict};
use super::load::Cell;
use super::matrix::{Matrix, Row, StepDiff};
use super::terminal::UNMATCHED;
use super::{cell_text, column_title, CellKind};
use std::fmt::Write;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An id-safe form of a case id.
fn anchor(case: &str) -> String {
    case.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

const STYLE: &str = r#"
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#ffffff; --head:#f6f8fa;
        --ok:#1a7f37; --bad:#cf222e; --badbg:#ffebe9; --warn:#9a6700; --warnbg:#fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px 40px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
code, .sig, .lines td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.summary { margin: 2px 0; }
.origins, .legend, .intent, .note, cite, .muted { color: var(--muted); }
.origins, .legend { margin: 2px 0; font-size: 12.5px; }
form { display: flex; gap: 18px; align-items: center; margin: 10px 0; padding: 8px 10px;
       background: var(--head); border: 1px solid var(--line); border-radius: 6px; }
form select { font: inherit; padding: 2px 4px; }
#count { margin-left: auto; color: var(--muted); }
table.matrix { border-collapse: collapse; width: 100%; table-layout: fixed; }
table.matrix > thead th { position: sticky; top: 0; background: var(--head); z-index: 1; text-align: left;
       border: 1px solid var(--line); padding: 6px 8px; }
table.matrix > thead th:first-child { width: 24%; }
table.matrix > thead th .detail { font-weight: normal; font-size: 11px; color: var(--muted); }
table.matrix > tbody > tr > th, table.matrix > tbody > tr > td { border: 1px solid var(--line);
       padding: 6px 8px; vertical-align: top; text-align: left; font-weight: normal; }
tr.case > th code { font-weight: 600; }
.intent { font-size: 12px; margin-top: 2px; }
tr.differs > th { border-left: 4px solid #d4a72c; background: var(--warnbg); }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 10px; margin-left: 4px;
         vertical-align: 1px; }
.badge.differs { background: #d4a72c; color: #fff; }
.badge.contra { background: var(--bad); color: #fff; }
.sig { font-weight: 600; word-break: break-word; }
td.missing .sig { font-weight: normal; font-style: italic; color: var(--muted); }
td.problem .sig { color: var(--warn); }
.note { font-size: 12px; font-style: italic; }
.what { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; color: var(--warn); word-break: break-word; }
ul.claims { list-style: none; margin: 6px 0 0; padding: 0; }
ul.claims li { font-size: 12px; margin: 3px 0; padding: 2px 4px; border-radius: 4px; }
ul.claims .v { font-weight: 700; display: inline-block; width: 1.1em; }
li.holds .v { color: var(--ok); }
li.contradicted { background: var(--badbg); }
li.contradicted .v, li.contradicted .flag { color: var(--bad); font-weight: 700; }
li.no-observation { color: var(--muted); }
li.unchecked .v { color: var(--muted); }
.tag { font-size: 10.5px; border: 1px solid var(--line); border-radius: 3px; padding: 0 3px; color: var(--muted); }
cite { display: block; font-size: 11px; font-style: normal; }
tr.detail > td { background: #fbfcfd; }
details summary { cursor: pointer; }
table.lines { border-collapse: collapse; margin: 6px 0 2px; width: 100%; }
table.lines th, table.lines td { border: 1px solid var(--line); padding: 2px 6px; text-align: left; vertical-align: top; }
table.lines th { background: var(--head); font-weight: 600; }
table.lines tr.d td { background: var(--warnbg); }
table.lines td.m { width: 1.5em; color: var(--warn); font-weight: 700; }
table.lines td.sec { width: 4.5em; color: var(--muted); }
ul.list li { margin: 4px 0; }
"#;

/// The page's only script: filter rows by family and by "differs", mirrored in the fragment.
/// (The controls' ids differ from the fragment's keys: `#differs` must not scroll to an element.)
const SCRIPT: &str = r#"
(function () {
  var family = document.getElementById('family-filter');
  var differs = document.getElementById('differs-only');
  var count = document.getElementById('count');
  function readHash() {
    var f = '', d = false;
    location.hash.replace(/^#/, '').split('&').forEach(function (part) {
      if (!part) return;
      var i = part.indexOf('=');
      var k = decodeURIComponent(i < 0 ? part : part.slice(0, i));
      var v = i < 0 ? '' : decodeURIComponent(part.slice(i + 1));
      if (k === 'family') f = v;
      if (k === 'differs') d = (v === '' || v === '1' || v === 'true');
    });
    var known = Array.prototype.some.call(family.options, function (o) { return o.value === f; });
    family.value = known ? f : '';
    differs.checked = d;
  }
  function writeHash() {
    var parts = [];
    if (family.value) parts.push('family=' + encodeURIComponent(family.value));
    if (differs.checked) parts.push('differs');
    var h = parts.length ? '#' + parts.join('&') : '';
    try { history.replaceState(null, '', h || location.pathname + location.search); }
    catch (e) { location.hash = h; }
  }
  function apply() {
    var f = family.value, d = differs.checked, shown = 0, total = 0;
    document.querySelectorAll('tr[data-family]').forEach(function (tr) {
      var hide = (f && tr.getAttribute('data-family') !== f) ||
                 (d && tr.getAttribute('data-differs') !== '1');
      if (hide) tr.setAttribute('hidden', ''); else tr.removeAttribute('hidden');
      if (tr.classList.contains('case')) { total++; if (!hide) shown++; }
    });
    count.textContent = shown + ' of ' + total + ' cases shown';
  }
  family.addEventListener('change', function () { writeHash(); apply(); });
  differs.addEventListener('change', function () { writeHash(); apply(); });
  window.addEventListener('hashchange', function () { readHash(); apply(); });
  readHash();
  apply();
})();
"#;

pub fn render(m: &Matrix) -> String {
    let mut o = String::new();
    let contradicted = m.contradicted();
    o.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    o.push_str("<title>sockconform: cross-platform matrix</title>\n");
    let _ = writeln!(o, "<style>{STYLE}</style>\n</head>\n<body>");
    o.push_str("<header>\n<h1>sockconform: cross-platform matrix</h1>\n");
    let _ = writeln!(
        o,
        "<p class=\"summary\">{} cases · <b>{}</b> where the observed platforms disagree · {} claims{}, <b>{}</b> contradicted by an observation</p>",
        m.rows.len(),
        m.differing(),
        m.claim_count(),
        m.claims_origin
            .as_deref()
            .map(|c| format!(" from <code>{}</code>", esc(c)))
            .unwrap_or_default(),
        contradicted.len()
    );
    let origins: Vec<String> = m
        .columns
        .iter()
        .map(|c| format!("<b>{}</b>: {}", esc(&column_title(c)), esc(&c.origin)))
        .collect();
    let _ = writeln!(o, "<p class=\"origins\">{}</p>", origins.join(" · "));
    o.push_str("<form id=\"filters\" onsubmit=\"return false\">\n<label>Family <select id=\"family-filter\"><option value=\"\">all families</option>");
    for f in m.families() {
        let _ = write!(o, "<option value=\"{0}\">{0}</option>", esc(f));
    }
    o.push_str("</select></label>\n<label><input type=\"checkbox\" id=\"differs-only\"> differs only</label>\n<span id=\"count\"></span>\n</form>\n");
    o.push_str("<p class=\"legend\">Claims beside each cell: <b style=\"color:var(--ok)\">✓</b> the observation agrees; <b style=\"color:var(--bad)\">✗</b> contradicted; <b>?</b> cannot be checked here; <b>·</b> no observation for that platform. Tags: doc, src (kernel or library source), derived (read from source, not yet observed), obs (measured or reported), unsourced. A claim never fills a cell.</p>\n</header>\n");

    if !contradicted.is_empty() {
        o.push_str("<section id=\"findings\">\n<h2>✗ Claims contradicted by an observation</h2>\n<ul class=\"list\">\n");
        for (row, c) in &contradicted {
            let _ = writeln!(
                o,
                "<li><a href=\"#case-{}\"><code>{}</code></a> on <b>{}</b>: <span class=\"tag\">{}</span> {} <span class=\"muted\">({})</span>: <span style=\"color:var(--bad)\">{}</span></li>",
                anchor(&row.case),
                esc(&row.case),
                esc(&c.column),
                esc(&c.claim.tag),
                esc(&c.claim.claim),
                esc(&c.claim.source),
                esc(c.verdict.why().unwrap_or(""))
            );
        }
        o.push_str("</ul>\n</section>\n");
    }

    o.push_str("<h2>Matrix</h2>\n<table class=\"matrix\">\n<thead><tr><th>case</th>");
    for c in &m.columns {
        let detail = c
            .detail
            .as_deref()
            .map(|d| format!("<div class=\"detail\">{}</div>", esc(d)))
            .unwrap_or_default();
        let _ = write!(o, "<th>{}{detail}</th>", esc(&c.name));
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for row in &m.rows {
        row_html(&mut o, m, row);
    }
    o.push_str("</tbody>\n</table>\n");

    for (id, title, list) in [
        (
            "claims-without-case",
            "Claims without a case yet",
            &m.orphan_claims,
        ),
        ("claims-unmatched", UNMATCHED, &m.unmatched_claims),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "<section id=\"{id}\">\n<h2>{title}</h2>\n<ul class=\"list\">"
        );
        for c in list {
            let _ = writeln!(
                o,
                "<li><code>{}</code> on <b>{}</b>: <span class=\"tag\">{}</span> {} <span class=\"muted\">({})</span></li>",
                esc(&c.case),
                esc(&c.scope()),
                esc(&c.tag),
                esc(&c.claim),
                esc(&c.source)
            );
        }
        o.push_str("</ul>\n</section>\n");
    }
    if !m.orphan_snapshots.is_empty() {
        o.push_str("<section id=\"snapshots-without-case\">\n<h2>Snapshots without a catalog case</h2>\n<ul class=\"list\">\n");
        for s in &m.orphan_snapshots {
            let _ = writeln!(o, "<li><code>{}</code></li>", esc(s));
        }
        o.push_str("</ul>\n</section>\n");
    }
    let _ = writeln!(o, "<script>{SCRIPT}</script>\n</body>\n</html>");
    o
}

fn row_html(o: &mut String, m: &Matrix, row: &Row) {
    let d = if row.differs { "1" } else { "0" };
    let contra = row.contradictions();
    let _ = write!(
        o,
        "<tr class=\"case{}\" id=\"case-{}\" data-case=\"{}\" data-family=\"{}\" data-differs=\"{d}\">",
        if row.differs { " differs" } else { "" },
        anchor(&row.case),
        esc(&row.case),
        esc(&row.family)
    );
    let _ = write!(
        o,
        "<th scope=\"row\"><code>{}</code>{}{}<div class=\"intent\">{}</div></th>",
        esc(&row.case),
        if row.differs {
            "<span class=\"badge differs\">≠ differs</span>"
        } else {
            ""
        },
        if contra > 0 {
            format!("<span class=\"badge contra\">✗ {contra}</span>")
        } else {
            String::new()
        },
        esc(&row.intent)
    );
    for (i, (cell, claims)) in row.cells.iter().zip(&row.claims).enumerate() {
        let (text, kind) = cell_text(cell);
        let class = match kind {
            CellKind::Observed => "observed",
            CellKind::Missing => "missing",
            CellKind::Problem => "problem",
        };
        let _ = write!(
            o,
            "<td class=\"{class}\"><div class=\"sig\">{}</div>",
            esc(&text)
        );
        // Two cells may read the same signature and still differ: name where.
        if let Some(what) = row.what_differs(i) {
            let _ = write!(o, "<div class=\"what\">≠ {}</div>", esc(&what));
        }
        if let Cell::Observed(seen) = cell {
            if let Some(note) = &seen.note {
                let _ = write!(o, "<div class=\"note\">{}</div>", esc(note));
            }
        }
        claims_html(o, claims);
        o.push_str("</td>");
    }
    o.push_str("</tr>\n");
    if let Some(diff) = &row.diff {
        row_detail(o, m, row, diff);
    }
}

/// The claims beside a cell, each with its verdict and source.
fn claims_html(o: &mut String, claims: &[Checked]) {
    if !claims.is_empty() {
        o.push_str("<ul class=\"claims\">");
        for c in claims {
            let title = c.verdict.why().unwrap_or("the observation agrees");
            let flag = match &c.verdict {
                Verdict::Contradicted(why) => {
                    format!(" <span class=\"flag\">CONTRADICTED: {}</span>", esc(why))
                }
                _ => String::new(),
            };
            let range = match &c.claim.releases {
                Some(_) => format!(" <span class=\"tag\">{}</span>", esc(&c.claim.scope())),
                None => String::new(),
            };
            let _ = write!(
                o,
                "<li class=\"{}\" title=\"{}\"><span class=\"v\">{}</span>{} <span class=\"tag\">{}</span>{range}{flag}<cite>{}</cite></li>",
                c.verdict.word(),
                esc(title),
                c.verdict.symbol(),
                esc(&c.claim.claim),
                esc(&c.claim.tag),
                esc(&c.claim.source)
            );
        }
        o.push_str("</ul>");
    }
}

/// The aligned lines of a differing row, under it.
fn row_detail(o: &mut String, m: &Matrix, row: &Row, diff: &StepDiff) {
    let d = if row.differs { "1" } else { "0" };
    let n_diff: usize = diff
        .sections
        .iter()
        .map(|s| s.lines.iter().filter(|l| l.differs).count())
        .sum();
    let _ = write!(
        o,
        "<tr class=\"detail\" data-for=\"{}\" data-family=\"{}\" data-differs=\"{d}\"><td colspan=\"{}\"><details open><summary><code>{}</code>: {n_diff} line(s) differ</summary><table class=\"lines\"><tr><th></th><th></th>",
        esc(&row.case),
        esc(&row.family),
        m.columns.len() + 1,
        esc(&row.case)
    );
    for &i in &diff.columns {
        let _ = write!(o, "<th>{}</th>", esc(&m.columns[i].name));
    }
    o.push_str("</tr>");
    for section in &diff.sections {
        for line in &section.lines {
            let _ = write!(
                o,
                "<tr{}><td class=\"m\">{}</td><td class=\"sec\">{}</td>",
                if line.differs { " class=\"d\"" } else { "" },
                if line.differs { "≠" } else { "" },
                section.title
            );
            for c in &line.cells {
                match c {
                    Some(t) => {
                        let _ = write!(o, "<td>{}</td>", esc(t));
                    }
                    None => o.push_str("<td class=\"muted\">—</td>"),
                }
            }
            o.push_str("</tr>");
        }
        if let Some(note) = &section.note {
            let _ = write!(
                o,
                "<tr><td></td><td class=\"sec\">{}</td><td colspan=\"{}\" class=\"note\">{}</td></tr>",
                section.title,
                diff.columns.len(),
                esc(note)
            );
        }
    }
    o.push_str("</table></details></td></tr>\n");
}
