//! `blobq blob put|get|rm`: blobs stored and read by id through `/tbs`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};

use super::conn::{json_of, ClientError, Conn};
use super::{output, Done};

#[derive(Subcommand, Debug)]
pub enum BlobCommand {
    /// Store a file (or stdin) as a blob of NS; prints its id
    Put(PutArgs),
    /// Read blob ID of NS to stdout or -o FILE
    Get(GetArgs),
    /// Delete blob ID of NS
    Rm(IdArgs),
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// The namespace
    pub namespace: String,
    /// The file to store; `-` or none reads stdin
    pub file: Option<PathBuf>,
    /// The blob's content type
    #[arg(long, short = 't', value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Seconds the blob is kept
    #[arg(long, short = 'l', value_name = "S")]
    pub lifetime: Option<u64>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The namespace
    pub namespace: String,
    /// The blob's id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub blob: IdArgs,
    /// Write the blob to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Delete the blob once read
    #[arg(long)]
    pub delete: bool,
}

pub async fn run(conn: &Conn, command: BlobCommand) -> Result<Done, ClientError> {
    match command {
        BlobCommand::Put(a) => put(conn, a).await,
        BlobCommand::Get(a) => get(conn, a).await,
        BlobCommand::Rm(a) => rm(conn, a).await,
    }
}

async fn put(conn: &Conn, a: PutArgs) -> Result<Done, ClientError> {
    let path = format!("/tbs/{}/blobs", a.namespace);
    let mut request = conn.request(Method::POST, &path, Duration::ZERO);
    if let Some(t) = &a.content_type {
        request = request.header("content-type", t);
    }
    if let Some(s) = a.lifetime {
        request = request.header("x-queueserver-lifetime", s);
    }
    let request = output::with_body(request, a.file.as_deref()).await?;
    let answer = conn.send(request, &[StatusCode::CREATED]).await?;
    let body: serde_json::Value = json_of(answer, "the store answer").await?;
    if conn.json {
        output::print_json(&body);
    } else {
        println!("{}", body["id"].as_str().unwrap_or_default());
    }
    Ok(Done::Ok)
}

fn blob_path(a: &IdArgs) -> String {
    format!("/tbs/{}/blobs/{}", a.namespace, a.id)
}

async fn get(conn: &Conn, a: GetArgs) -> Result<Done, ClientError> {
    let mut path = blob_path(&a.blob);
    if a.delete {
        path.push_str("?delete=1");
    }
    let request = conn.request(Method::GET, &path, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    output::write_body(answer, a.output.as_deref()).await?;
    Ok(Done::Ok)
}

async fn rm(conn: &Conn, a: IdArgs) -> Result<Done, ClientError> {
    let request = conn.request(Method::DELETE, &blob_path(&a), Duration::ZERO);
    conn.send(request, &[StatusCode::NO_CONTENT]).await?;
    Ok(Done::Ok)
}
