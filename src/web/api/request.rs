//! Reading images and paging out of API requests: multipart, raw bytes or base64 JSON, checked
//! and decoded for the model.

use std::io::Cursor;
use std::path::Path;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use base64::Engine as _;
use image::ImageFormat;
use serde::Deserialize;

use crate::data::image_files::{IMAGE_FORMAT_NAMES, is_supported};
use crate::search::fusion::SearchMode;
use crate::web::AppState;
use crate::web::worker::ModelInfo;

use super::{ApiError, ApiResult};

/// An image from a request: its bytes and a name for messages.
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The JSON form of an image request.
#[derive(Deserialize)]
pub(super) struct JsonImage {
    image_base64: Option<String>,
    size: Option<usize>,
    offset: Option<usize>,
    mode: Option<String>,
}

/// Paging for searches, and the mode of an image search.
#[derive(Debug, Deserialize, Default)]
pub struct Page {
    pub size: Option<usize>,
    pub offset: Option<usize>,
    /// `caption`, `visual` or `hybrid` (image searches only; absent: the index's default).
    pub mode: Option<String>,
}

/// Largest page a search returns.
pub const MAX_PAGE: usize = 100;
/// Results per page when the request does not say.
pub const DEFAULT_PAGE: usize = 12;

impl Page {
    pub(super) fn mode(&self) -> ApiResult<Option<SearchMode>> {
        self.mode
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .map(|m| {
                m.trim().parse::<SearchMode>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "mode must be caption, visual or hybrid, not {m:?}"
                    ))
                })
            })
            .transpose()
    }

    pub(super) fn checked(&self) -> ApiResult<(usize, usize)> {
        let size = self.size.unwrap_or(DEFAULT_PAGE);
        if size == 0 || size > MAX_PAGE {
            return Err(ApiError::bad_request(format!(
                "size must be between 1 and {MAX_PAGE}, not {size}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 10_000 {
            return Err(ApiError::bad_request(format!(
                "offset must be at most 10000, not {offset}"
            )));
        }
        Ok((size, offset))
    }
}

pub(super) fn decode_base64(text: &str) -> ApiResult<Vec<u8>> {
    let text = text.trim();
    let payload = match text.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_base64",
                    "a data: URL must be base64-encoded (data:image/png;base64,...)",
                ));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_base64",
                    "the data: URL has no comma before its data",
                ));
            }
        },
        None => text,
    };
    let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut last = None;
    for engine in engines {
        match engine.decode(&compact) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => last = Some(e),
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_base64",
        format!(
            "image_base64 is not valid base64: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

/// Reads the images of a request (multipart fields `image`, or any file field when `many`; or
/// JSON `{"image_base64"}`) and the paging fields that came with them.
pub(super) async fn read_images(
    req: Request,
    state: &AppState,
    many: bool,
) -> ApiResult<(Vec<Upload>, Page)> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the server's limit of {} bytes",
            state.max_body
        ))
    };
    // Refuse a declared length over the limit before reading anything (streamed bodies are
    // limited as they are read).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return Err(too_large());
    }
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut uploads = Vec::new();
        let mut page = Page::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::bad_request(e.body_text())),
            };
            let name = field.name().unwrap_or("").to_string();
            let file_name = field.file_name().map(str::to_string);
            let data = match field.bytes().await {
                Ok(d) => d,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::bad_request(e.body_text())),
            };
            match name.as_str() {
                "mode" => page.mode = Some(String::from_utf8_lossy(&data).into_owned()),
                "size" | "offset" => {
                    let text = String::from_utf8_lossy(&data);
                    let value: usize = text.trim().parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "{name} must be a whole number, not {text:?}"
                        ))
                    })?;
                    if name == "size" {
                        page.size = Some(value);
                    } else {
                        page.offset = Some(value);
                    }
                }
                "image" | "images" => uploads.push(Upload {
                    name: file_name.unwrap_or(name),
                    bytes: data.to_vec(),
                }),
                _ if many && file_name.is_some() => uploads.push(Upload {
                    name: file_name.unwrap_or(name),
                    bytes: data.to_vec(),
                }),
                _ => {}
            }
        }
        if uploads.is_empty() {
            return Err(ApiError::bad_request(
                "the form has no image: send the file in a field named `image`",
            ));
        }
        if !many && uploads.len() > 1 {
            return Err(ApiError::bad_request(
                "send one image per request (use /api/images to add several)",
            ));
        }
        Ok((uploads, page))
    } else if content_type.starts_with("application/json") {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        let json: JsonImage = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body is malformed: {e}")))?;
        let text = json
            .image_base64
            .ok_or_else(|| ApiError::bad_request("the JSON body has no `image_base64` field"))?;
        let bytes = decode_base64(&text)?;
        Ok((
            vec![Upload {
                name: "image_base64".into(),
                bytes,
            }],
            Page {
                size: json.size,
                offset: json.offset,
                mode: json.mode,
            },
        ))
    } else {
        Err(ApiError::unsupported(format!(
            "send multipart/form-data (field `image`) or application/json ({{\"image_base64\": ...}}), not {:?}",
            if content_type.is_empty() {
                "no content type"
            } else {
                &content_type
            }
        )))
    }
}

/// Checks an image's type (from its bytes) and size, decodes it and resizes it for the model.
/// Returns the pixels and the detected format.
pub(super) fn prepare(upload: &Upload, info: &ModelInfo) -> ApiResult<(Vec<u8>, ImageFormat)> {
    let format = image::guess_format(&upload.bytes).map_err(|_| {
        ApiError::unsupported(format!(
            "{}: not an image the server can read (the content decides, not the name; send {IMAGE_FORMAT_NAMES})",
            upload.name
        ))
    })?;
    if !is_supported(format) {
        return Err(ApiError::unsupported(format!(
            "{}: {format:?} images are not supported (send {IMAGE_FORMAT_NAMES})",
            upload.name
        )));
    }
    let (w, h) = image::ImageReader::with_format(Cursor::new(&upload.bytes), format)
        .into_dimensions()
        .map_err(|e| {
            ApiError::bad_image(format!("{}: unreadable {format:?} image: {e}", upload.name))
        })?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > info.limits.max_pixels {
        return Err(ApiError::too_large(format!(
            "{}: {w}×{h} image has {pixels} pixels, more than the limit of {}",
            upload.name, info.limits.max_pixels
        )));
    }
    let image =
        crate::data::image::decode_bytes(&upload.bytes, Path::new(&upload.name), &info.limits)
            .map_err(|e| ApiError::bad_image(e.to_string()))?;
    let rgb = crate::data::image::resize_rgb8(&image, info.image_size as u32, info.resize);
    Ok((rgb.into_raw(), format))
}

pub(super) async fn prepare_blocking(
    upload: Upload,
    info: std::sync::Arc<ModelInfo>,
) -> ApiResult<(Upload, Vec<u8>, ImageFormat)> {
    tokio::task::spawn_blocking(move || {
        let (pixels, format) = prepare(&upload, &info)?;
        Ok((upload, pixels, format))
    })
    .await
    .map_err(|e| ApiError::internal(format!("image preparation failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_plain_and_data_urls() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("!!!").unwrap_err().error, "bad_base64");
        assert_eq!(
            decode_base64("data:text/plain,hi").unwrap_err().error,
            "bad_base64"
        );
    }
}
