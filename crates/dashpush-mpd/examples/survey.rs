//! Prints how each MPD in a directory maps to the model (development aid).
use dashpush_mpd::Manifest;
use url::Url;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names {
        let Ok(xml) = std::fs::read_to_string(&path) else {
            continue;
        };
        let url = Url::parse("http://origin.test/a/b/manifest.mpd").unwrap();
        match Manifest::parse(&xml, &url) {
            Ok(m) => {
                let reps = m.representations().count();
                let first = m.representations().next().map(|(at, _)| at);
                let seg = first.and_then(|at| m.segment(at, 0));
                let u = seg.and_then(|s| m.segment_url(&s));
                let back = u.as_ref().and_then(|u| m.locate(u));
                println!(
                    "{:40} ok dyn={} periods={} reps={} warn={} first={} located={}",
                    path.file_name().unwrap().to_string_lossy(),
                    m.is_dynamic(),
                    m.periods.len(),
                    reps,
                    m.warnings.len(),
                    u.map(String::from).unwrap_or_default(),
                    back.is_some()
                );
                for w in m.warnings.iter().take(2) {
                    println!("      {w}");
                }
            }
            Err(e) => println!("{:40} ERR {e}", path.file_name().unwrap().to_string_lossy()),
        }
    }
}
