//! The HTTP ceiling: a bare hyper 1 HTTP/1.1 server on a tokio multi-thread runtime, like
//! payhook's, that reads the whole body and answers 200 `success`. Whatever payhook does beyond
//! this (verify, store, fsync, relay) is its own cost; this is what the machine, the kernel's
//! loopback and hyper cost with the same load generator and the same bodies.
//!
//! `bench-server --listen 127.0.0.1:0` prints the bound address on stdout, then serves until
//! killed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match req.into_body().collect().await {
        Ok(_) => 200,
        Err(_) => 400,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"success")));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    Ok(resp)
}

fn main() -> std::process::ExitCode {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: bench-server [--listen ADDR]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-server: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(serve(&listen)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn serve(listen: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
