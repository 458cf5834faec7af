//! The fixed responses of the data plane: AWS's HTML error pages and the
//! header values every answer carries. Bytes copied from captures of the real
//! service (docs/protocol/data-plane.md#error-pages), so they live in one place.

/// `Server` header of every response (real IMDS says `EC2ws`).
pub const SERVER: &str = "EC2ws";

/// Content type of metadata values, listings, JSON documents and tokens.
pub const TEXT_PLAIN: &str = "text/plain";

/// Content type of the HTML error pages.
pub const TEXT_HTML: &str = "text/html";

/// 400 page (token PUT with a missing or invalid TTL).
pub const BAD_REQUEST_HTML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n   <head>\n      <title>400 - Bad Request</title>\n   </head>\n   <body>\n      <h1>400 - Bad Request</h1>\n   </body>\n</html>";

/// 401 page (token missing where required, or invalid).
pub const UNAUTHORIZED_HTML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n   <head>\n      <title>401 - Unauthorized</title>\n   </head>\n   <body>\n      <h1>401 - Unauthorized</h1>\n   </body>\n</html>";

/// 404 page; note the different XML declaration and indentation of the real one.
pub const NOT_FOUND_HTML: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>404 - Not Found</title>\n </head>\n <body>\n  <h1>404 - Not Found</h1>\n </body>\n</html>";
