//! What the binary's tests share: a tiny HTTP/1.1 origin.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;

/// An origin on loopback that answers each request (one per connection)
/// with what `answer` makes of its head: the request line and the header
/// lines, lower-cased. `Connection: close` is added to the answer.
pub fn origin(answer: impl Fn(&[String]) -> String + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let mut reader = BufReader::new(read);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_ascii_lowercase());
                }
                let response = answer(&head).replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    addr
}
