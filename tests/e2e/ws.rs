//! The WebSocket sub-protocol (issue: WebSocket, spec §8), with a tokio-tungstenite client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dashpush_proto::ws::message::Body;
use dashpush_proto::ws::{
    EndReason, Frame, Message, MpdRequest, Received, SUBPROTOCOL, SegmentCancel, SegmentRequest,
    StreamId,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::*;

const URN: &str = "urn:mpeg:dash:fdh:2016:";
type Socket = WebSocketStream<TcpStream>;

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) async fn open(gw: SocketAddr, protocol: Option<&str>) -> Result<Socket, String> {
    let mut req = format!("ws://{gw}/dashpush").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    let tcp = TcpStream::connect(gw).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            assert_eq!(
                resp.headers().get("sec-websocket-protocol").unwrap(),
                SUBPROTOCOL
            );
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(format!(
            "{} {}",
            r.status(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn id(n: u32) -> StreamId {
    StreamId::new(n).unwrap()
}

pub(crate) async fn send(ws: &mut Socket, m: Message) {
    ws.send(Ws::Binary(m.encode().unwrap())).await.unwrap();
}

pub(crate) fn mpd_request(n: u32, url: &str, directive: Option<&str>) -> Message {
    Message {
        stream_id: id(n),
        end: true,
        body: Body::MpdRequest(MpdRequest {
            url: url.into(),
            push_directive: directive.map(|d| format!("{URN}{d}")),
        }),
    }
}

pub(crate) fn segment_request(n: u32, url: &str, directive: Option<&str>) -> Message {
    Message {
        stream_id: id(n),
        end: true,
        body: Body::SegmentRequest(SegmentRequest {
            url: url.into(),
            push_directive: directive.map(|d| format!("{URN}{d}")),
            range: None,
        }),
    }
}

/// Everything received for one request: its resource, its pushes (in arrival order), its end.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) first: Option<Received>,
    pub(crate) body: Vec<u8>,
    pub(crate) pushes: Vec<(u32, Received, Vec<u8>, Option<EndReason>)>,
    pub(crate) end: Option<(EndReason, Option<u16>)>,
}

/// Reads until the End of stream of request `n` (with a deadline).
pub(crate) async fn answer(ws: &mut Socket, n: u32) -> Answer {
    let mut a = Answer::default();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while a.end.is_none() {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("answer before the deadline")
            .expect("socket open")
            .unwrap();
        let Ws::Binary(b) = msg else { continue };
        let m = Message::from_frame(Frame::decode(b, usize::MAX).unwrap()).unwrap();
        let sid = m.stream_id.get();
        match m.body {
            Body::MpdReceived(r) | Body::SegmentReceived(r) if sid == n => {
                a.body.extend_from_slice(&r.payload);
                if a.first.is_none() {
                    a.first = Some(r);
                }
            }
            Body::SegmentReceived(r) | Body::MpdReceived(r) => {
                if let Some(p) = a.pushes.iter_mut().find(|p| p.0 == sid) {
                    p.2.extend_from_slice(&r.payload);
                } else {
                    let payload = r.payload.to_vec();
                    a.pushes.push((sid, r, payload, None));
                }
            }
            Body::EndOfStream(e) if sid == n => a.end = Some((e.reason, e.status)),
            Body::EndOfStream(e) => match a.pushes.iter_mut().find(|p| p.0 == sid) {
                Some(p) => p.3 = Some(e.reason),
                None => a
                    .pushes
                    .push((sid, Received::default(), Vec::new(), Some(e.reason))),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    a
}

/// Segment cancel of one pushed URL, on client stream `n`.
fn url_cancel(n: u32, url: &str) -> Message {
    Message {
        stream_id: id(n),
        end: true,
        body: Body::SegmentCancel(SegmentCancel {
            streams: vec![],
            urls: vec![url.into()],
        }),
    }
}

pub(crate) fn name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn a_socket_without_the_subprotocol_is_refused_and_plain_http_still_works() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    rt().block_on(async {
        let err = open(gw.addr, None).await.expect_err("refused");
        assert!(err.starts_with("400"), "{err}");
        assert!(err.contains(SUBPROTOCOL), "{err}");
        let err = open(gw.addr, Some("chat")).await.expect_err("refused");
        assert!(err.starts_with("400"), "{err}");
        open(gw.addr, Some(&format!("chat, {SUBPROTOCOL}")))
            .await
            .unwrap();
    });
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_ws_upgrades_total{result="no_subprotocol"}"#
        ),
        2.0
    );
}

#[test]
fn fast_start_over_the_socket_sends_the_mpd_then_each_push_on_its_own_stream() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(
            &mut ws,
            mpd_request(
                1,
                "/vod/manifest.mpd",
                Some(r#"push-fast-start;{"segments":2}"#),
            ),
        )
        .await;
        let a = answer(&mut ws, 1).await;
        let first = a.first.unwrap();
        assert_eq!(first.status, 200);
        assert!(
            first
                .push_ack
                .unwrap()
                .starts_with(&format!("{URN}push-fast-start;"))
        );
        assert_eq!(a.body, demo_file("manifest.mpd"));
        assert_eq!(a.end, Some((EndReason::Complete, None)));
        let names: Vec<&str> = a.pushes.iter().map(|p| name(&p.1.url)).collect();
        assert_eq!(
            names,
            [
                "init-stream1.m4s",
                "init-stream2.m4s",
                "chunk-stream1-00001.m4s",
                "chunk-stream2-00001.m4s",
                "chunk-stream1-00002.m4s",
                "chunk-stream2-00002.m4s"
            ]
        );
        for (i, (sid, r, body, end)) in a.pushes.iter().enumerate() {
            assert_eq!(*sid, 2 + 2 * i as u32, "even ids, increasing");
            assert!(r.pushed);
            assert_eq!(r.parent, Some(id(1)));
            assert_eq!(*body, demo_file(name(&r.url)), "{}", r.url);
            assert_eq!(
                *end, None,
                "a complete push ends with END, not End of stream"
            );
        }
        // A segment request with push-next on the same socket.
        send(
            &mut ws,
            segment_request(3, "/vod/chunk-stream0-00001.m4s", Some("push-next;2")),
        )
        .await;
        let a = answer(&mut ws, 3).await;
        assert_eq!(a.body, demo_file("chunk-stream0-00001.m4s"));
        // Representation 0 was not in the fast-start selection: switching (Annex H) sends its
        // init first.
        let names: Vec<&str> = a.pushes.iter().map(|p| name(&p.1.url)).collect();
        assert_eq!(
            names,
            [
                "init-stream0.m4s",
                "chunk-stream0-00002.m4s",
                "chunk-stream0-00003.m4s"
            ]
        );
        assert!(a.pushes.iter().all(|p| p.1.parent == Some(id(3))));
    });
    let m = |n: &str, t: &str| {
        metric(
            gw.admin,
            &format!(r#"{n}{{push_type="{t}",transport="ws"}}"#),
        )
    };
    assert_eq!(m("dashpush_push_promises_total", "push-fast-start"), 6.0);
    assert_eq!(m("dashpush_push_claimed_total", "push-fast-start"), 6.0);
    assert_eq!(m("dashpush_push_promises_total", "push-next"), 3.0);
}

#[test]
fn bad_messages_get_an_error_end_of_stream_and_the_socket_stays_open() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        // Unknown message code 0x7f on stream 1.
        let mut raw = vec![0x7f, 0x01, 0, 0, 0, 1, 0, 0, 0, 2];
        raw.extend_from_slice(b"{}");
        ws.send(Ws::Binary(Bytes::from(raw))).await.unwrap();
        assert_eq!(
            answer(&mut ws, 1).await.end,
            Some((EndReason::Error, Some(400)))
        );
        // A missing resource: End of stream error 404.
        send(&mut ws, segment_request(3, "/vod/nope.m4s", None)).await;
        assert_eq!(
            answer(&mut ws, 3).await.end,
            Some((EndReason::Error, Some(404)))
        );
        // A stream id that goes backwards.
        send(
            &mut ws,
            segment_request(1, "/vod/chunk-stream0-00001.m4s", None),
        )
        .await;
        assert_eq!(
            answer(&mut ws, 1).await.end,
            Some((EndReason::Error, Some(400)))
        );
        // A URL on another origin.
        send(
            &mut ws,
            segment_request(5, "http://elsewhere.test/vod/chunk-stream0-00001.m4s", None),
        )
        .await;
        assert_eq!(
            answer(&mut ws, 5).await.end,
            Some((EndReason::Error, Some(400)))
        );
        // Cancel of an unknown stream: ignored; the socket still serves.
        send(
            &mut ws,
            Message {
                stream_id: id(7),
                end: true,
                body: Body::SegmentCancel(SegmentCancel {
                    streams: vec![id(98)],
                    urls: vec![],
                }),
            },
        )
        .await;
        send(
            &mut ws,
            segment_request(9, "/vod/chunk-stream0-00001.m4s", None),
        )
        .await;
        let a = answer(&mut ws, 9).await;
        assert_eq!(a.body, demo_file("chunk-stream0-00001.m4s"));
        assert_eq!(a.end, Some((EndReason::Complete, None)));
    });
}

async fn closed_with(ws: &mut Socket) -> u16 {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("close before the deadline")
        {
            Some(Ok(Ws::Close(Some(f)))) => return f.code.into(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[test]
fn oversize_short_and_text_messages_close_the_socket_with_their_codes() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        ws.send(Ws::Binary(Bytes::from(vec![0u8; (1 << 20) + 1])))
            .await
            .unwrap();
        assert_eq!(closed_with(&mut ws).await, 1009);
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        ws.send(Ws::Binary(Bytes::from_static(&[1, 0, 0])))
            .await
            .unwrap();
        assert_eq!(closed_with(&mut ws).await, 1002);
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        ws.send(Ws::text("hello")).await.unwrap();
        assert_eq!(closed_with(&mut ws).await, 1003);
    });
}

#[test]
fn a_cancel_stops_queued_pushes_with_a_cancelled_end_of_stream() {
    // A slow origin keeps the pushes queued long enough for the cancel to arrive first.
    let (_o, origin) = origin(&["--latency-ms", "300"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(&mut ws, mpd_request(1, "/vod/manifest.mpd", None)).await;
        assert_eq!(
            answer(&mut ws, 1).await.end,
            Some((EndReason::Complete, None))
        );
        send(
            &mut ws,
            segment_request(3, "/vod/chunk-stream0-00001.m4s", Some("push-next;2")),
        )
        .await;
        send(&mut ws, url_cancel(5, "/vod/chunk-stream0-00003.m4s")).await;
        let a = answer(&mut ws, 3).await;
        assert_eq!(a.body, demo_file("chunk-stream0-00001.m4s"));
        let got: Vec<(String, Option<EndReason>)> = a
            .pushes
            .iter()
            .map(|p| (name(&p.1.url).to_owned(), p.3))
            .collect();
        assert_eq!(
            got,
            [
                ("chunk-stream0-00002.m4s".to_owned(), None),
                (String::new(), Some(EndReason::Cancelled))
            ],
            "{:?}",
            a.pushes
        );
    });
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_push_reset_total{push_type="push-next",transport="ws"}"#
        ),
        1.0
    );
    let _ = Duration::ZERO;
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_stall_timeout() {
    let (_o, origin) = origin(&[]);
    let dir = std::env::temp_dir().join(format!("dashpush-ws-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashpush.yaml");
    // Pushes of 8 x 4 MiB blobs (outside the MPD, allowed here) against a client that never
    // reads: the queue fills, pushes pause, and after 500 ms the socket is closed.
    std::fs::write(
        &file,
        format!(
            "origin: http://{origin}\npush: {{allow_outside_mpd: true, max_bytes_in_flight: 1073741824}}\nwebsocket: {{stall_timeout_ms: 500}}\n"
        ),
    )
    .unwrap();
    let gw = gateway_with(&["-c", file.to_str().unwrap()]);
    let list: Vec<String> = (0..8)
        .map(|i| format!("/_origin/blob/{}", (4 << 20) + i))
        .collect();
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(&mut ws, mpd_request(1, "/vod/manifest.mpd", None)).await;
        answer(&mut ws, 1).await;
        send(
            &mut ws,
            segment_request(
                3,
                "/vod/chunk-stream0-00001.m4s",
                Some(&format!("push-list;{}", list.join(","))),
            ),
        )
        .await;
        let start = std::time::Instant::now();
        while metric(gw.admin, r#"dashpush_ws_closes_total{code="1008"}"#) < 1.0 {
            assert!(
                start.elapsed() < DEADLINE,
                "a stalled client was never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(ws);
    });
    let start = std::time::Instant::now();
    while metric(gw.admin, "dashpush_ws_sessions") != 0.0 {
        assert!(start.elapsed() < DEADLINE, "session still counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_server_pings_and_serves_the_player_directory() {
    let (_o, origin) = origin(&[]);
    let dir = std::env::temp_dir().join(format!("dashpush-ws-player-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("player")).unwrap();
    std::fs::write(
        dir.join("player/index.html"),
        "<!doctype html><title>p</title>",
    )
    .unwrap();
    std::fs::write(dir.join("secret.txt"), "no").unwrap();
    let file = dir.join("dashpush.yaml");
    std::fs::write(
        &file,
        format!("origin: http://{origin}\nwebsocket: {{ping_interval_ms: 100}}\n"),
    )
    .unwrap();
    let gw = gateway_with(&[
        "-c",
        file.to_str().unwrap(),
        "--static-dir",
        dir.join("player").to_str().unwrap(),
    ]);
    let (status, body) = get(gw.addr, "/player/");
    assert_eq!(status, 200);
    assert_eq!(body, b"<!doctype html><title>p</title>");
    // Dot segments, raw or encoded, are refused before any routing (static or origin).
    assert_eq!(get(gw.addr, "/player/../secret.txt").0, 400);
    assert_eq!(get(gw.addr, "/player/%2e%2e/secret.txt").0, 400);
    assert_eq!(get(gw.addr, "/vod/%2E%2E/vod/manifest.mpd").0, 400);
    assert_eq!(get(gw.addr, "/player/nope.js").0, 404);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(700);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
            if matches!(m, Ws::Ping(_)) {
                pings += 1;
            }
        }
        assert!(pings >= 3, "{pings} pings in 700 ms at a 100 ms interval");
        // Reading answered the pings: the socket is still open.
        send(
            &mut ws,
            segment_request(1, "/vod/chunk-stream0-00001.m4s", None),
        )
        .await;
        assert_eq!(
            answer(&mut ws, 1).await.end,
            Some((EndReason::Complete, None))
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_subprotocol_also_runs_over_http2_extended_connect() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/ws_h2.py");
    let run = |extra: &[&str]| -> serde_json::Value {
        let target = gw.addr.to_string();
        let directive = format!(r#"{URN}push-fast-start;{{"segments":2}}"#);
        let mut args = vec![script, target.as_str(), "/dashpush", directive.as_str()];
        args.extend_from_slice(extra);
        let (code, out, err) = tool("/usr/bin/python3", &args);
        assert_eq!(code, 0, "ws_h2.py: {err}");
        serde_json::from_slice(&out).unwrap()
    };
    // RFC 8441: the server announces SETTINGS_ENABLE_CONNECT_PROTOCOL and accepts the CONNECT.
    let v = run(&[]);
    assert_eq!(v["connect_protocol"], true);
    assert_eq!(v["status"], 200);
    let streams = v["streams"].as_object().unwrap();
    assert_eq!(streams["1"]["len"], demo_file("manifest.mpd").len());
    let last = streams["1"]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["code"], 5);
    assert_eq!(last["meta"]["reason"], "complete");
    let mut pushed: Vec<(u64, String, u64)> = streams
        .iter()
        .filter(|(k, _)| *k != "1")
        .map(|(k, s)| {
            let first = &s["messages"][0]["meta"];
            assert_eq!(first["pushed"], true);
            assert_eq!(first["parent"], 1);
            (
                k.parse().unwrap(),
                name(first["url"].as_str().unwrap()).to_owned(),
                s["len"].as_u64().unwrap(),
            )
        })
        .collect();
    pushed.sort();
    let names: Vec<&str> = pushed.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "init-stream1.m4s",
            "init-stream2.m4s",
            "chunk-stream1-00001.m4s",
            "chunk-stream2-00001.m4s",
            "chunk-stream1-00002.m4s",
            "chunk-stream2-00002.m4s"
        ]
    );
    for (_, n, len) in &pushed {
        assert_eq!(*len as usize, demo_file(n).len(), "{n}");
    }
    // Without the sub-protocol: 400, as over HTTP/1.1.
    assert_eq!(run(&["--no-subprotocol"])["status"], 400);
}

/// A malformed message on the id of a running request is answered for that message only: the
/// request keeps its stream slot and still completes, and the stream cap still holds.
#[test]
fn a_malformed_message_on_a_running_request_keeps_its_slot_and_the_cap_holds() {
    // The origin holds every answer back, so the requests are all running at once.
    let (_o, origin) = origin(&["--latency-ms", "1500"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let cap = dashpush_proto::limits::MAX_WS_STREAMS as u32;
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        for i in 0..cap {
            send(&mut ws, mpd_request(2 * i + 1, "/vod/manifest.mpd", None)).await;
        }
        // On every running id: a Segment request without its url (malformed metadata).
        for i in 0..cap {
            let mut raw = vec![0x02, 0x01];
            raw.extend_from_slice(&(2 * i + 1).to_be_bytes());
            raw.extend_from_slice(&2u32.to_be_bytes());
            raw.extend_from_slice(b"{}");
            ws.send(Ws::Binary(Bytes::from(raw))).await.unwrap();
        }
        // One request more than the cap: refused.
        let over = 2 * cap + 1;
        send(&mut ws, mpd_request(over, "/vod/manifest.mpd", None)).await;
        let mut complete = std::collections::BTreeSet::new();
        let mut errors = 0;
        let mut over_status = None;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while complete.len() < cap as usize || over_status.is_none() {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("every answer before the deadline")
                .expect("socket open")
                .unwrap();
            let Ws::Binary(b) = msg else { continue };
            let m = Message::from_frame(Frame::decode(b, usize::MAX).unwrap()).unwrap();
            if let Body::EndOfStream(e) = m.body {
                match (m.stream_id.get(), e.reason) {
                    (id, _) if id == over => over_status = e.status,
                    (id, EndReason::Complete) => assert!(complete.insert(id)),
                    (_, EndReason::Error) => errors += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(over_status, Some(429), "the cap held");
        assert_eq!(errors, cap, "one error per malformed message");
        assert_eq!(
            complete.len(),
            cap as usize,
            "every running request completed"
        );
    });
}

/// `promised = completed + reset + dropped` holds over the socket: pushes sent to the end, one
/// cancelled by the client, and pushes cut short by a socket the client dropped.
#[test]
fn the_counter_rule_holds_over_the_socket() {
    let (_o, origin) = origin(&["--latency-ms", "200"]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(&mut ws, mpd_request(1, "/vod/manifest.mpd", None)).await;
        answer(&mut ws, 1).await;
        send(
            &mut ws,
            segment_request(3, "/vod/chunk-stream0-00001.m4s", Some("push-next;2")),
        )
        .await;
        send(&mut ws, url_cancel(5, "/vod/chunk-stream0-00003.m4s")).await;
        let a = answer(&mut ws, 3).await;
        assert_eq!(a.end, Some((EndReason::Complete, None)));
        let cancelled = a
            .pushes
            .iter()
            .filter(|p| p.3 == Some(EndReason::Cancelled));
        assert_eq!(cancelled.count(), 1, "{:?}", a.pushes);
        // Pushes in flight on a socket the client drops after the first pushed message.
        send(
            &mut ws,
            segment_request(7, "/vod/chunk-stream1-00001.m4s", Some("push-next;2")),
        )
        .await;
        loop {
            let Some(Ok(Ws::Binary(b))) = ws.next().await else {
                continue;
            };
            if Frame::decode(b, usize::MAX)
                .unwrap()
                .stream_id
                .get()
                .is_multiple_of(2)
            {
                break;
            }
        }
        drop(ws);
    });
    assert_counter_rule(gw.admin, "ws");
    let series = |name: &str| {
        metric(
            gw.admin,
            &format!(r#"dashpush_push_{name}_total{{push_type="push-next",transport="ws"}}"#),
        )
    };
    assert!(series("promises") >= 4.0);
    assert!(series("completed") >= 2.0);
    assert!(series("reset") >= 1.0);
}

/// The MPD, then at once a segment with push-next on the same socket, on fresh gateways: the
/// MPD is always known to the planner.
#[test]
fn the_first_directive_after_the_mpd_finds_it_over_the_socket_on_fresh_gateways() {
    let (_o, origin) = origin(&[]);
    for round in 0..25 {
        let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
        rt().block_on(async {
            let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
            send(&mut ws, mpd_request(1, "/vod/manifest.mpd", None)).await;
            let mut got = 0;
            // At once after the MPD's last byte (its END flag), before its End of stream.
            while got == 0 {
                let Some(Ok(Ws::Binary(b))) = ws.next().await else {
                    continue;
                };
                let m = Message::from_frame(Frame::decode(b, usize::MAX).unwrap()).unwrap();
                if m.end {
                    got += 1;
                }
            }
            send(
                &mut ws,
                segment_request(3, "/vod/chunk-stream0-00001.m4s", Some("push-next;2")),
            )
            .await;
            let a = answer(&mut ws, 3).await;
            let ack = a.first.as_ref().and_then(|r| r.push_ack.clone());
            assert_eq!(
                ack.as_deref(),
                Some("urn:mpeg:dash:fdh:2016:push-next;2"),
                "round {round}"
            );
            let pushes = a.pushes.iter().filter(|p| p.0.is_multiple_of(2));
            assert_eq!(pushes.count(), 2, "round {round}: {:?}", a.pushes);
        });
    }
}

/// A pushed MPD goes out as MPD received (0x03), a pushed segment as Segment received (0x04).
#[test]
fn a_pushed_mpd_is_mpd_received() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    rt().block_on(async {
        // Another socket makes the MPD known.
        let mut a = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(&mut a, mpd_request(1, "/vod/manifest.mpd", None)).await;
        answer(&mut a, 1).await;
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(
            &mut ws,
            segment_request(
                1,
                "/vod/chunk-stream0-00001.m4s",
                Some("push-list;manifest.mpd,chunk-stream0-00002.m4s"),
            ),
        )
        .await;
        let mut codes = Vec::new();
        loop {
            let Some(Ok(Ws::Binary(b))) = ws.next().await else {
                continue;
            };
            let f = Frame::decode(b, usize::MAX).unwrap();
            let (code, sid) = (f.code, f.stream_id.get());
            let m = Message::from_frame(f).unwrap();
            if sid.is_multiple_of(2) && m.end && !matches!(m.body, Body::EndOfStream(_)) {
                let url = match &m.body {
                    Body::MpdReceived(r) | Body::SegmentReceived(r) => r.url.clone(),
                    _ => String::new(),
                };
                codes.push((code, url));
            }
            if sid == 1 && matches!(m.body, Body::EndOfStream(_)) {
                break;
            }
        }
        assert!(
            codes.contains(&(0x03, "/vod/manifest.mpd".into())),
            "{codes:?}"
        );
        assert!(
            codes.contains(&(0x04, "/vod/chunk-stream0-00002.m4s".into())),
            "{codes:?}"
        );
    });
}

/// RFC 6455 §4.4: a 426 for another version names the version the server speaks.
#[test]
fn a_wrong_websocket_version_gets_426_naming_13() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let (code, head, _) = tool(
        "curl",
        &[
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 8",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            &format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}"),
            &format!("http://{}/dashpush", gw.addr),
        ],
    );
    assert_eq!(code, 0);
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 426"), "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
}
