//! What the origin serves: a directory, or the built-in VOD and live streams.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::OriginError;

/// The content behind the origin.
#[derive(Debug, Clone)]
pub enum Content {
    /// Files under a directory.
    Dir(PathBuf),
    /// The built-in streams under `/vod/` and `/live/`.
    Demo(DemoOptions),
}

/// Settings of the built-in streams.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// When the live stream started (its availabilityStartTime).
    pub live_start: SystemTime,
    /// Live segment duration (the VOD segments are 2 s; a shorter one compresses time for tests).
    pub live_segment: Duration,
    /// Live segments become available this much after the MPD says (a late packager).
    pub live_late: Duration,
    /// The live MPD lists its segments in a SegmentTimeline (`$Time$`), growing as they
    /// appear, instead of a `$Number$` template.
    pub live_timeline: bool,
    /// Low-latency live: each segment is available from its start (availabilityTimeOffset =
    /// its duration) and is sent with chunked transfer, a quarter at a time as it is produced.
    pub live_chunked: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            // Whole milliseconds: the MPD's availabilityStartTime has millisecond precision,
            // and a client computing availability from it must agree with the origin.
            live_start: {
                let now = SystemTime::now();
                let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            },
            live_segment: Duration::from_secs(2),
            live_late: Duration::ZERO,
            live_timeline: false,
            live_chunked: false,
        }
    }
}

/// One resource to send.
#[derive(Debug, Clone)]
pub struct Resource {
    pub(crate) body: Bytes,
    pub(crate) content_type: &'static str,
    pub(crate) cache_control: &'static str,
    /// Low-latency live: the body is being produced; send its quarters at these times.
    pub(crate) produced: Option<[SystemTime; 4]>,
}

/// The VOD files, embedded: `(name, bytes)`.
const VOD: &[(&str, &[u8])] = &[
    ("manifest.mpd", include_bytes!("../demo/vod/manifest.mpd")),
    (
        "init-stream0.m4s",
        include_bytes!("../demo/vod/init-stream0.m4s"),
    ),
    (
        "init-stream1.m4s",
        include_bytes!("../demo/vod/init-stream1.m4s"),
    ),
    (
        "init-stream2.m4s",
        include_bytes!("../demo/vod/init-stream2.m4s"),
    ),
    (
        "chunk-stream0-00001.m4s",
        include_bytes!("../demo/vod/chunk-stream0-00001.m4s"),
    ),
    (
        "chunk-stream0-00002.m4s",
        include_bytes!("../demo/vod/chunk-stream0-00002.m4s"),
    ),
    (
        "chunk-stream0-00003.m4s",
        include_bytes!("../demo/vod/chunk-stream0-00003.m4s"),
    ),
    (
        "chunk-stream1-00001.m4s",
        include_bytes!("../demo/vod/chunk-stream1-00001.m4s"),
    ),
    (
        "chunk-stream1-00002.m4s",
        include_bytes!("../demo/vod/chunk-stream1-00002.m4s"),
    ),
    (
        "chunk-stream1-00003.m4s",
        include_bytes!("../demo/vod/chunk-stream1-00003.m4s"),
    ),
    (
        "chunk-stream2-00001.m4s",
        include_bytes!("../demo/vod/chunk-stream2-00001.m4s"),
    ),
    (
        "chunk-stream2-00002.m4s",
        include_bytes!("../demo/vod/chunk-stream2-00002.m4s"),
    ),
    (
        "chunk-stream2-00003.m4s",
        include_bytes!("../demo/vod/chunk-stream2-00003.m4s"),
    ),
];

/// VOD segments per Representation.
const VOD_SEGMENTS: u64 = 3;

impl Content {
    /// A directory, checked to exist.
    pub fn dir(path: impl Into<PathBuf>) -> Result<Self, OriginError> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(|source| OriginError::Dir {
            path: path.display().to_string(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(OriginError::Dir {
                path: path.display().to_string(),
                source: std::io::Error::other("not a directory"),
            });
        }
        Ok(Self::Dir(path))
    }

    /// The resource at a URL path, if any, at wall-clock time `now`.
    pub(crate) async fn get(&self, path: &str, now: SystemTime) -> Option<Resource> {
        match self {
            Self::Dir(root) => {
                let file = safe_join(root, path)?;
                let body = tokio::fs::read(&file).await.ok()?;
                Some(Resource {
                    body: Bytes::from(body),
                    content_type: content_type(path),
                    cache_control: "max-age=60",
                    produced: None,
                })
            }
            Self::Demo(opts) => demo(opts, path, now),
        }
    }
}

fn demo(opts: &DemoOptions, path: &str, now: SystemTime) -> Option<Resource> {
    if let Some(name) = path.strip_prefix("/vod/") {
        let (_, body) = VOD.iter().find(|(n, _)| *n == name)?;
        return Some(Resource {
            body: Bytes::from_static(body),
            content_type: content_type(name),
            cache_control: "max-age=3600",
            produced: None,
        });
    }
    let name = path.strip_prefix("/live/")?;
    if name == "time" {
        // The clock the live MPD's UTCTiming points at (urn:mpeg:dash:utc:http-iso:2014).
        return Some(Resource {
            body: Bytes::from(rfc3339(now)),
            content_type: "text/plain",
            cache_control: "no-store",
            produced: None,
        });
    }
    if name == "manifest.mpd" {
        return Some(Resource {
            body: Bytes::from(live_mpd(opts, now)),
            content_type: content_type(name),
            cache_control: "max-age=1",
            produced: None,
        });
    }
    if name.starts_with("init-stream") {
        let (_, body) = VOD.iter().find(|(n, _)| *n == name)?;
        return Some(Resource {
            body: Bytes::from_static(body),
            content_type: content_type(name),
            cache_control: "max-age=3600",
            produced: None,
        });
    }
    // chunk-stream<r>-<number>.m4s (or chunk-stream<r>-t<time>.m4s on a timeline): available
    // once the segment has ended on the wall clock (plus `live_late`), or from its start when
    // chunked.
    let rest = name.strip_prefix("chunk-stream")?.strip_suffix(".m4s")?;
    let (rep, number) = rest.split_once('-')?;
    let seg = opts.live_segment.as_millis().max(1);
    let number: u64 = match number.strip_prefix('t') {
        // $Time$ in microseconds: the segment starting there.
        Some(t) => {
            let t: u128 = t.parse().ok()?;
            let dur_us = seg * 1000;
            if !t.is_multiple_of(dur_us) {
                return None;
            }
            u64::try_from(t / dur_us).ok()?.checked_add(1)?
        }
        None => number.parse().ok()?,
    };
    if number == 0 || !matches!(rep, "0" | "1" | "2") {
        return None;
    }
    let elapsed = now.duration_since(opts.live_start).ok()?;
    let late = opts.live_late.as_millis();
    let available_ms = if opts.live_chunked {
        u128::from(number - 1) * seg + late
    } else {
        u128::from(number) * seg + late
    };
    if available_ms > elapsed.as_millis() {
        return None;
    }
    let produced = if opts.live_chunked && u128::from(number) * seg > elapsed.as_millis() {
        let start = opts.live_start
            + Duration::from_millis(u64::try_from(u128::from(number - 1) * seg).ok()?);
        let q = opts.live_segment / 4;
        Some([start, start + q, start + q * 2, start + q * 3])
    } else {
        None
    };
    let vod = format!(
        "chunk-stream{rep}-{:05}.m4s",
        (number - 1) % VOD_SEGMENTS + 1
    );
    let (_, body) = VOD.iter().find(|(n, _)| *n == vod)?;
    // Each pass over the loop moves the media timeline on, so a player sees one continuous
    // stream (the decode times of the VOD files restart at 0).
    let pass = (number - 1) / VOD_SEGMENTS;
    let body = if pass == 0 {
        Bytes::from_static(body)
    } else {
        let rep_files: Vec<&[u8]> = (1..=VOD_SEGMENTS)
            .filter_map(|k| {
                let n = format!("chunk-stream{rep}-{k:05}.m4s");
                VOD.iter().find(|(f, _)| *f == n).map(|(_, b)| *b)
            })
            .collect();
        let loop_len = rep_files
            .last()
            .and_then(|last| Some(fmp4::decode_time(last)? + fmp4::duration(last)?))?;
        Bytes::from(fmp4::retime(body, pass * loop_len))
    };
    Some(Resource {
        body,
        content_type: content_type(name),
        cache_control: "max-age=3600",
        produced,
    })
}

/// Just enough ISO BMFF to re-time a media segment: `sidx` earliest presentation time and
/// `tfdt` base media decode time (both in the track's timescale in the demo files), and the
/// segment's duration from `trun`/`tfhd`.
mod fmp4 {
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    /// `(type, start, end)` of the boxes in `b[from..to]`.
    fn boxes(b: &[u8], from: usize, to: usize) -> Vec<([u8; 4], usize, usize)> {
        let mut out = Vec::new();
        let mut at = from;
        while at + 8 <= to {
            let Some(size) = u32_at(b, at).map(|s| s as usize) else {
                break;
            };
            if size < 8 || at + size > to {
                break;
            }
            let mut kind = [0u8; 4];
            if let Some(k) = b.get(at + 4..at + 8) {
                kind.copy_from_slice(k);
            }
            out.push((kind, at, at + size));
            at += size;
        }
        out
    }

    fn traf_boxes(b: &[u8]) -> Vec<([u8; 4], usize, usize)> {
        let mut out = Vec::new();
        for (k, s, e) in boxes(b, 0, b.len()) {
            if &k == b"moof" {
                for (k2, s2, e2) in boxes(b, s + 8, e) {
                    if &k2 == b"traf" {
                        out.extend(boxes(b, s2 + 8, e2));
                    }
                }
            }
        }
        out
    }

    /// The `tfdt` base media decode time.
    pub(super) fn decode_time(b: &[u8]) -> Option<u64> {
        let (_, s, _) = traf_boxes(b).into_iter().find(|(k, ..)| k == b"tfdt")?;
        match b.get(s + 8)? {
            1 => u64_at(b, s + 12),
            _ => u32_at(b, s + 12).map(u64::from),
        }
    }

    /// The sum of the sample durations (`trun`, or `tfhd`'s default).
    pub(super) fn duration(b: &[u8]) -> Option<u64> {
        let trafs = traf_boxes(b);
        let (_, hs, _) = trafs.iter().find(|(k, ..)| k == b"tfhd")?;
        let hflags = u32_at(b, hs + 8)? & 0x00ff_ffff;
        // tfhd: track_ID, then optional fields in flag order.
        let mut at = hs + 16;
        if hflags & 0x01 != 0 {
            at += 8;
        }
        if hflags & 0x02 != 0 {
            at += 4;
        }
        let default = if hflags & 0x08 != 0 {
            u32_at(b, at).map(u64::from)
        } else {
            None
        };
        let mut total = 0u64;
        for (_, ts, _) in trafs.iter().filter(|(k, ..)| k == b"trun") {
            let flags = u32_at(b, ts + 8)? & 0x00ff_ffff;
            let count = u64::from(u32_at(b, ts + 12)?);
            let mut at = ts + 16;
            if flags & 0x01 != 0 {
                at += 4;
            }
            if flags & 0x04 != 0 {
                at += 4;
            }
            if flags & 0x100 == 0 {
                total += count * default?;
                continue;
            }
            let per = [0x100u32, 0x200, 0x400, 0x800]
                .iter()
                .filter(|f| flags & **f != 0)
                .count()
                * 4;
            for i in 0..count as usize {
                total += u64::from(u32_at(b, at + i * per)?);
            }
        }
        Some(total)
    }

    /// A copy of `b` with `add` added to its `sidx` earliest presentation time and its `tfdt`.
    pub(super) fn retime(b: &[u8], add: u64) -> Vec<u8> {
        let mut out = b.to_vec();
        let mut patch = |at: usize, version: u8| {
            if version == 1 {
                if let Some(v) = u64_at(&out, at) {
                    out[at..at + 8].copy_from_slice(&(v + add).to_be_bytes());
                }
            } else if let Some(v) = u32_at(&out, at) {
                let v = u32::try_from(u64::from(v) + add).unwrap_or(u32::MAX);
                out[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
        };
        for (k, s, _) in boxes(b, 0, b.len()) {
            if &k == b"sidx" {
                patch(s + 20, b.get(s + 8).copied().unwrap_or(0));
            }
        }
        for (k, s, _) in traf_boxes(b) {
            if &k == b"tfdt" {
                patch(s + 12, b.get(s + 8).copied().unwrap_or(0));
            }
        }
        out
    }
}

/// The live MPD: dynamic, `$Number$` from 1, segments available from the stream start.
fn live_mpd(opts: &DemoOptions, now: SystemTime) -> String {
    let ast = rfc3339(opts.live_start);
    let published = rfc3339(now);
    let seg_ms = opts.live_segment.as_millis().max(1);
    let dur_us = seg_ms * 1000;
    let secs = |ms: u128| format!("{}.{:03}", ms / 1000, ms % 1000);
    let (mup, delay, tsbd) = (secs(seg_ms), secs(seg_ms * 2), secs(seg_ms * 15));
    let ato = if opts.live_chunked {
        format!(r#" availabilityTimeOffset="{}""#, secs(seg_ms))
    } else {
        String::new()
    };
    // Timeline: every segment available by now (a live MPD that grows as it is refreshed).
    let available = now.duration_since(opts.live_start).map_or(0, |e| {
        e.as_millis().saturating_sub(opts.live_late.as_millis()) / seg_ms
    });
    let window = 15u128;
    let first = available.saturating_sub(window);
    let template = |rep: u32| {
        if opts.live_timeline {
            let s = if available > first {
                format!(
                    r#"<S t="{}" d="{dur_us}" r="{}"/>"#,
                    first * dur_us,
                    available - first - 1
                )
            } else {
                String::new()
            };
            format!(
                r#"<SegmentTemplate timescale="1000000" initialization="init-stream{rep}.m4s" media="chunk-stream{rep}-t$Time$.m4s"{ato}><SegmentTimeline>{s}</SegmentTimeline></SegmentTemplate>"#
            )
        } else {
            format!(
                r#"<SegmentTemplate timescale="1000000" duration="{dur_us}" initialization="init-stream{rep}.m4s" media="chunk-stream{rep}-$Number%05d$.m4s" startNumber="1"{ato}/>"#
            )
        }
    };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic"
  availabilityStartTime="{ast}" publishTime="{published}" minimumUpdatePeriod="PT{mup}S"
  timeShiftBufferDepth="PT{tsbd}S" suggestedPresentationDelay="PT{delay}S" maxSegmentDuration="PT{mup}S" minBufferTime="PT{mup}S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="0" codecs="avc1.42d00b" bandwidth="60000" width="96" height="54">{t0}</Representation>
      <Representation id="1" codecs="avc1.42c00a" bandwidth="30000" width="64" height="36">{t1}</Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="2" codecs="mp4a.40.2" bandwidth="16000" audioSamplingRate="16000">{t2}</Representation>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/live/time"/>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="{published}"/>
</MPD>
"#,
        t0 = template(0),
        t1 = template(1),
        t2 = template(2),
    )
}

/// RFC 3339 UTC with milliseconds, without a date library.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Joins a URL path under `root`, refusing anything that would leave it.
/// `path` under `root`, or `None` if it would leave it or names a dotfile (`.git`,
/// `.htpasswd`, … are never served).
fn safe_join(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) if p.to_string_lossy().starts_with('.') => return None,
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Content type by extension, with the DASH types.
pub(crate) fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or_default();
    match ext {
        "mpd" => "application/dash+xml",
        "m4s" | "mp4" | "m4v" | "cmfv" => "video/mp4",
        "m4a" | "cmfa" => "audio/mp4",
        "vtt" => "text/vtt",
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn paths_stay_under_root() {
        let root = Path::new("/srv");
        assert_eq!(
            safe_join(root, "/a/b.m4s"),
            Some(PathBuf::from("/srv/a/b.m4s"))
        );
        assert_eq!(safe_join(root, "/a/../../etc/passwd"), None);
    }

    #[test]
    fn live_segments_appear_on_the_clock() {
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        let opts = DemoOptions {
            live_start: start,
            live_segment: Duration::from_secs(2),
            ..Default::default()
        };
        let at = |s| start + Duration::from_millis(s);
        assert!(demo(&opts, "/live/chunk-stream0-00001.m4s", at(1999)).is_none());
        assert!(demo(&opts, "/live/chunk-stream0-00001.m4s", at(2000)).is_some());
        let four = demo(&opts, "/live/chunk-stream2-00004.m4s", at(8000)).unwrap();
        let one = demo(&opts, "/vod/chunk-stream2-00001.m4s", at(0)).unwrap();
        // The content loops over the VOD segments, re-timed to continue the timeline.
        let loop_len = 64512
            + fmp4::duration(
                &demo(&opts, "/vod/chunk-stream2-00003.m4s", at(0))
                    .unwrap()
                    .body,
            )
            .unwrap();
        assert_eq!(four.body.len(), one.body.len());
        assert_eq!(four.body.to_vec(), fmp4::retime(&one.body, loop_len));
        assert_ne!(four.body, one.body);
        assert!(demo(&opts, "/live/chunk-stream3-00001.m4s", at(9000)).is_none());
        let mpd = demo(&opts, "/live/manifest.mpd", at(5000)).unwrap();
        let text = std::str::from_utf8(&mpd.body).unwrap();
        assert!(
            text.contains(r#"availabilityStartTime="1970-01-01T00:16:40.000Z""#),
            "{text}"
        );
        // The MPD's clock: an http-iso UTCTiming answered with the origin's time, never cached.
        assert!(text.contains(r#"urn:mpeg:dash:utc:http-iso:2014" value="/live/time""#));
        let time = demo(&opts, "/live/time", at(5000)).unwrap();
        assert_eq!(&time.body[..], b"1970-01-01T00:16:45.000Z");
        assert_eq!(time.cache_control, "no-store");
    }

    #[test]
    fn looped_live_segments_continue_the_media_timeline() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let opts = DemoOptions {
            live_start: start,
            live_segment: Duration::from_secs(2),
            ..Default::default()
        };
        let at = |ms: u64| start + Duration::from_millis(ms);
        let body = |p: &str| demo(&opts, p, at(60_000)).unwrap().body;
        let video = |n: u64| fmp4::decode_time(&body(&format!("/live/chunk-stream0-{n:05}.m4s")));
        // 2 s segments at timescale 10240: segment n starts at (n - 1) * 20480, loops included.
        for n in 1..=7 {
            assert_eq!(video(n), Some((n - 1) * 20480), "video segment {n}");
        }
        assert_eq!(
            fmp4::duration(&body("/live/chunk-stream0-00001.m4s")),
            Some(20480)
        );
        // Audio: each segment starts where the previous one ended.
        for n in 1..=6u64 {
            let this = body(&format!("/live/chunk-stream2-{n:05}.m4s"));
            let next = body(&format!("/live/chunk-stream2-{:05}.m4s", n + 1));
            assert_eq!(
                fmp4::decode_time(&this)
                    .zip(fmp4::duration(&this))
                    .map(|(t, d)| t + d),
                fmp4::decode_time(&next),
                "audio segment {n}"
            );
        }
    }
}
