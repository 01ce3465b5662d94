//! `GET /{code}/qr`: the image decodes to the link's short URL (SVG and PNG, read back with a
//! QR decoder), its sizes and formats, caching by entity tag, the headers that keep an SVG an
//! image, and 404 / 410 as a redirect would answer.

mod common;

use common::{TestApp, send, spawn_app};

/// What a QR decoder reads in a greyscale image of `side` pixels.
fn decode(side: usize, luma: impl Fn(usize, usize) -> u8) -> String {
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, luma);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("the QR code decodes").1
}

/// Reads back an SVG of ours: its unit squares, in a grid of modules.
fn decode_svg(svg: &str) -> String {
    let view_box = svg.split("viewBox=\"0 0 ").nth(1).unwrap();
    let side: usize = view_box.split(' ').next().unwrap().parse().unwrap();
    let path = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut dark = vec![false; side * side];
    for square in path.split('M').filter(|square| !square.is_empty()) {
        let (x, rest) = square.split_once(' ').unwrap();
        let y = rest.split('h').next().unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        dark[y * side + x] = true;
    }
    // Four pixels a module, so the decoder has room to find the finder patterns.
    let scale = 4;
    decode(side * scale, |x, y| {
        if dark[(y / scale) * side + x / scale] {
            0
        } else {
            255
        }
    })
}

fn decode_png(bytes: &[u8]) -> (u32, String) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(frame.width, frame.height);
    let side = frame.width as usize;
    let row = frame.line_size;
    assert_eq!(frame.bit_depth, png::BitDepth::One);
    let text = decode(side, |x, y| {
        if buffer[y * row + x / 8] & (0x80 >> (x % 8)) == 0 {
            0
        } else {
            255
        }
    });
    (frame.width, text)
}

async fn qr(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> common::TestResponse {
    send(app.addr, "GET", path, headers, b"").await
}

#[tokio::test]
async fn the_image_encodes_the_short_url_as_svg_and_as_png() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/qr").await;
    let short_url = format!("http://sho.rt/{code}");

    let svg = qr(&app, &format!("/{code}/qr"), &[]).await;
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert_eq!(svg.header("x-content-type-options"), Some("nosniff"));
    assert!(
        svg.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(svg.header("cache-control"), Some("public, max-age=86400"));
    let text = svg.text();
    assert!(
        text.starts_with("<svg ") && text.contains("width=\"256\""),
        "{text}"
    );
    assert!(!text.contains("<script"));
    assert_eq!(decode_svg(&text), short_url);

    for size in [64, 512] {
        let png = qr(&app, &format!("/{code}/qr?format=png&size={size}"), &[]).await;
        assert_eq!(png.status, 200);
        assert_eq!(png.header("content-type"), Some("image/png"));
        assert_eq!(png.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(decode_png(&png.body), (size, short_url.clone()));
    }
    let largest = qr(&app, &format!("/{code}/qr?format=png&size=2048"), &[]).await;
    let info = png::Decoder::new(std::io::Cursor::new(largest.body.clone()))
        .read_info()
        .unwrap()
        .info()
        .width;
    assert_eq!(info, 2048);
    // An alias encodes its own short URL.
    let alias = app
        .shorten(r#"{"url": "https://example.com/a", "alias": "qr-alias"}"#)
        .await;
    assert_eq!(alias.status, 201);
    let svg = qr(&app, "/qr-alias/qr?size=100", &[]).await;
    assert_eq!(decode_svg(&svg.text()), "http://sho.rt/qr-alias");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_parameters_are_400_and_unknown_or_gone_links_answer_as_their_redirect() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/q").await;
    for query in [
        "size=63",
        "size=2049",
        "size=abc",
        "size=",
        "format=gif",
        "format=PNG",
    ] {
        qr(&app, &format!("/{code}/qr?{query}"), &[])
            .await
            .assert_problem(400);
    }
    qr(&app, "/nosuchcode/qr", &[]).await.assert_problem(404);
    qr(&app, "/no.such/qr", &[]).await.assert_problem(404);
    let post = send(app.addr, "POST", &format!("/{code}/qr"), &[], b"").await;
    post.assert_problem(405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = send(app.addr, "HEAD", &format!("/{code}/qr"), &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let key = common::make_key(&app.db_url, "ops", "admin");
    let disabled = app
        .keyed("PATCH", &format!("/{code}"), &key, r#"{"disabled": true}"#)
        .await;
    assert_eq!(disabled.status, 200);
    qr(&app, &format!("/{code}/qr"), &[])
        .await
        .assert_problem(410);
    // A link with a visit limit answers 410 once its visits are used up (none is taken here).
    let limited = app
        .shorten(r#"{"url": "https://example.com/once", "max_visits": 1}"#)
        .await
        .json()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(qr(&app, &format!("/{limited}/qr"), &[]).await.status, 200);
    assert_eq!(
        qr(&app, &format!("/{limited}/qr"), &[]).await.status,
        200,
        "took no visit"
    );
    assert_eq!(app.get(&format!("/{limited}")).await.status, 302);
    qr(&app, &format!("/{limited}/qr"), &[])
        .await
        .assert_problem(410);
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_holding_the_image_gets_304_and_the_tag_follows_format_and_size() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/etag").await;
    let path = format!("/{code}/qr");
    let first = qr(&app, &path, &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(
        qr(&app, &path, &[]).await.header("etag"),
        Some(etag.as_str())
    );

    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {etag}");
    for held in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let again = qr(&app, &path, &[("If-None-Match", held)]).await;
        assert_eq!(again.status, 304, "{held}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("cache-control"), Some("public, max-age=86400"));
    }
    let stale = qr(&app, &path, &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(stale.status, 200);
    for other in [format!("{path}?size=300"), format!("{path}?format=png")] {
        let tag = qr(&app, &other, &[])
            .await
            .header("etag")
            .unwrap()
            .to_owned();
        assert_ne!(tag, etag, "{other}");
        assert_eq!(
            qr(&app, &other, &[("If-None-Match", &etag)]).await.status,
            200
        );
    }
    // A link gone is 410 even to a client holding its image.
    let key = common::make_key(&app.db_url, "ops", "admin");
    app.keyed("DELETE", &format!("/{code}"), &key, "").await;
    qr(&app, &path, &[("If-None-Match", &etag)])
        .await
        .assert_problem(410);
    app.shutdown().await;
}

#[tokio::test]
async fn qr_codes_count_toward_the_stats_limit() {
    let app = spawn_app(&["--rate-limit-stats", "1/s,burst=2"]).await;
    let code = app.create("https://example.com/limited").await;
    let path = format!("/{code}/qr");
    assert_eq!(qr(&app, &path, &[]).await.status, 200);
    assert_eq!(qr(&app, &path, &[]).await.status, 200);
    let refused = qr(&app, &path, &[]).await;
    refused.assert_problem(429);
    assert!(
        refused
            .header("ratelimit-policy")
            .unwrap()
            .contains("stats")
    );
    app.shutdown().await;
}
