//! Image files on disk: which names and formats count as images, and listing the images of a
//! folder. The one home of the image extensions and formats (decoding is in [`super::image`]).

use std::path::{Path, PathBuf};

use image::ImageFormat;

use crate::error::{Error, Result};

/// File extensions treated as images when a folder is listed (decoding goes by content).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"];

/// The image formats capsearch reads, in the order of [`IMAGE_EXTENSIONS`]' names.
pub const IMAGE_FORMATS: [ImageFormat; 6] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::WebP,
    ImageFormat::Tiff,
];

/// The formats named for people, e.g. in an error that refuses another format.
pub const IMAGE_FORMAT_NAMES: &str = "PNG, JPEG, GIF, BMP, WebP or TIFF";

/// Photo formats that photo libraries hold and capsearch does not read, by file extension: a
/// folder run reports each such file as skipped, with the format's name, instead of passing over
/// it without a word.
pub const UNSUPPORTED_PHOTO_EXTENSIONS: [(&str, &str); 12] = [
    ("heic", "HEIC"),
    ("heif", "HEIF"),
    ("avif", "AVIF"),
    ("jxl", "JPEG XL"),
    ("dng", "DNG (camera raw)"),
    ("cr2", "CR2 (camera raw)"),
    ("cr3", "CR3 (camera raw)"),
    ("nef", "NEF (camera raw)"),
    ("arw", "ARW (camera raw)"),
    ("raf", "RAF (camera raw)"),
    ("orf", "ORF (camera raw)"),
    ("rw2", "RW2 (camera raw)"),
];

/// The name of an unsupported photo format, recognised from the bytes: the ISO base media file
/// format's `ftyp` box of HEIC/HEIF and AVIF files (what phones write).
pub fn unsupported_photo_format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    match &bytes[8..12] {
        b"avif" | b"avis" => Some("AVIF"),
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("HEIC"),
        b"mif1" | b"msf1" => Some("HEIF"),
        _ => None,
    }
}

/// Why a file of this name is skipped although it is a photo: its format, when capsearch does not
/// read it.
fn unsupported_photo_reason(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    UNSUPPORTED_PHOTO_EXTENSIONS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, name)| {
            format!("{name} photos are not supported; convert it to JPEG or PNG ({IMAGE_FORMAT_NAMES} are read)")
        })
}

/// True when the file name has an image extension (used only to find images in a folder; decoding
/// goes by content).
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether capsearch reads images of this format.
pub fn is_supported(format: ImageFormat) -> bool {
    IMAGE_FORMATS.contains(&format)
}

/// The extension a file of this format is stored under (`png` for any other format).
pub fn extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::WebP => "webp",
        ImageFormat::Tiff => "tif",
        _ => "png",
    }
}

/// The MIME type of this format (`image/png` for any other format).
pub fn mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::Bmp => "image/bmp",
        ImageFormat::WebP => "image/webp",
        ImageFormat::Tiff => "image/tiff",
        _ => "image/png",
    }
}

/// An entry [`list_images`] could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// What [`list_images`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageList {
    /// Image files, in the order of the inputs; each folder's images sorted by file name.
    pub images: Vec<PathBuf>,
    /// Entries of the folders that could not be read (no permission, a broken symlink, ...), and
    /// photos in a format capsearch does not read (HEIC, AVIF, camera raw), each with the reason.
    pub unreadable: Vec<Unreadable>,
}

/// Lists images: a folder gives every file with an image name in it and below it (symlinks to
/// files included), sorted by name; any other input is kept as given (it is read, and refused if
/// it is not an image, when it is opened). A folder entry that cannot be read is reported in
/// [`ImageList::unreadable`], never dropped silently. Fails only on an input that does not exist.
pub fn list_images(inputs: &[PathBuf]) -> Result<ImageList> {
    let mut out = ImageList::default();
    for input in inputs {
        if !input.is_dir() {
            if !input.exists() && input.symlink_metadata().is_err() {
                return Err(Error::io(
                    input,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
                ));
            }
            out.images.push(input.clone());
            continue;
        }
        for entry in walkdir::WalkDir::new(input).sort_by_file_name() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    out.unreadable.push(Unreadable {
                        path: e.path().unwrap_or(input).to_path_buf(),
                        reason: e
                            .io_error()
                            .map(|io| io.to_string())
                            .unwrap_or_else(|| e.to_string()),
                    });
                    continue;
                }
            };
            if !is_image_name(entry.path()) {
                if let Some(reason) = unsupported_photo_reason(entry.path()) {
                    out.unreadable.push(Unreadable {
                        path: entry.into_path(),
                        reason,
                    });
                }
                continue;
            }
            let kind = entry.file_type();
            if kind.is_file() {
                out.images.push(entry.into_path());
            } else if kind.is_symlink() {
                match std::fs::metadata(entry.path()) {
                    Ok(m) if m.is_file() => out.images.push(entry.into_path()),
                    Ok(_) => {}
                    Err(e) => out.unreadable.push(Unreadable {
                        path: entry.into_path(),
                        reason: format!("a symbolic link that cannot be followed: {e}"),
                    }),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_formats() {
        assert!(is_image_name(Path::new("a/B.JPG")));
        assert!(is_image_name(Path::new("x.webp")));
        assert!(!is_image_name(Path::new("x.txt")));
        assert!(!is_image_name(Path::new("png")));
        for f in IMAGE_FORMATS {
            assert!(is_supported(f));
            assert!(IMAGE_EXTENSIONS.contains(&extension(f)));
            assert!(mime(f).starts_with("image/"));
        }
        assert!(is_supported(ImageFormat::Tiff));
        assert!(is_image_name(Path::new("scan.TIFF")));
        assert!(!is_supported(ImageFormat::Avif));
    }

    #[test]
    fn lists_sorted_images_and_reports_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for f in ["b.png", "a.jpg", "notes.txt", "sub/c.gif", "sub/phone.HEIC"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let mut expected = vec![
            root.join("a.jpg"),
            root.join("b.png"),
            root.join("sub/c.gif"),
        ];
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("b.png"), root.join("link.png")).unwrap();
            std::os::unix::fs::symlink(root.join("gone.png"), root.join("broken.png")).unwrap();
            expected.insert(2, root.join("link.png"));
        }
        let single = root.join("b.png");
        let list = list_images(&[root.to_path_buf(), single.clone()]).unwrap();
        expected.push(single);
        assert_eq!(list.images, expected);
        #[cfg(unix)]
        {
            assert_eq!(list.unreadable.len(), 2, "{list:?}");
            assert_eq!(list.unreadable[0].path, root.join("broken.png"));
        }
        let heic = list.unreadable.last().unwrap();
        assert_eq!(heic.path, root.join("sub/phone.HEIC"));
        assert!(
            heic.reason.contains("HEIC photos are not supported"),
            "{heic:?}"
        );
        assert!(list_images(&[root.join("missing")]).is_err());
    }

    #[test]
    fn heic_and_avif_are_named_from_their_bytes() {
        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
        assert_eq!(unsupported_photo_format(&heic), Some("HEIC"));
        let mut avif = vec![0, 0, 0, 24];
        avif.extend_from_slice(b"ftypavif\0\0\0\0");
        assert_eq!(unsupported_photo_format(&avif), Some("AVIF"));
        assert_eq!(unsupported_photo_format(b"\x89PNG\r\n\x1a\n\0\0\0\0"), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_without_permission_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::write(locked.join("a.png"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let readable = std::fs::read_dir(&locked).is_ok(); // root reads it anyway
        let list = list_images(&[dir.path().to_path_buf()]).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !readable {
            assert!(list.images.is_empty(), "{list:?}");
            assert_eq!(list.unreadable.len(), 1, "{list:?}");
            assert_eq!(list.unreadable[0].path, locked);
        }
    }
}
