// CloudFront Function (viewer request, cloudfront-js-2.0) in front of the
// bucket holding published sites: maps `{slug}.{AppsDomain}{path}` to the
// object `sites/{slug}/{file}`, by the same rules as `apna serve`
// (shared/src/publish/layout.rs); both are checked against
// tests/fixtures/site_routes.json (tests/e2e/site_router.test.mjs runs this
// file with node). No Lambda is involved in serving a site.
//
// The template fills in the three values below (!Sub): the apps domain, and
// for a custom-domain distribution (infra/site-domain.yaml) the one slug it
// serves, or extra `host=slug` pairs.
var APPS_DOMAIN = '${AppsDomain}';
var SITE_SLUG = '${SiteSlug}';
var SITE_HOSTS = '${SiteHosts}';
var DEPLOY_DIR = '_apna';

function isLabel(s) {
  return s.length >= 1 && s.length <= 63 && /^[a-z0-9-]+$/.test(s);
}

// The slug a Host header names, or null: exactly one lower-case label under
// the apps domain (a port is allowed), or one of SITE_HOSTS.
function slugForHost(host) {
  var name = host;
  var colon = host.lastIndexOf(':');
  if (colon >= 0) {
    var port = host.substring(colon + 1);
    if (!/^[0-9]{1,5}$/.test(port)) return null;
    name = host.substring(0, colon);
  }
  var pairs = SITE_HOSTS ? SITE_HOSTS.split(',') : [];
  for (var i = 0; i < pairs.length; i++) {
    var kv = pairs[i].split('=');
    if (kv.length === 2 && kv[0].trim() === name) return kv[1].trim();
  }
  var dot = name.indexOf('.');
  if (dot < 0) return null;
  var label = name.substring(0, dot);
  if (name.substring(dot + 1) !== APPS_DOMAIN || !isLabel(label)) return null;
  return label;
}

// The site-relative file a request path gets (percent-decoded), or null for
// paths that can name no file. Paths without a file extension get the entry.
function route(uri) {
  var decoded;
  try {
    decoded = decodeURIComponent(uri);
  } catch (e) {
    return null;
  }
  if (decoded.charAt(0) !== '/') return null;
  var rel = decoded.substring(1);
  if (rel === '' || rel.charAt(rel.length - 1) === '/') return 'index.html';
  var segments = rel.split('/');
  for (var i = 0; i < segments.length; i++) {
    var s = segments[i];
    if (s === '' || s === '.' || s === '..' || s.indexOf('\\') >= 0 || s.indexOf('\u0000') >= 0) {
      return null;
    }
  }
  if (segments[0] === DEPLOY_DIR || segments[segments.length - 1].indexOf('.') >= 0) return rel;
  return 'index.html';
}

function handler(event) {
  var request = event.request;
  var host = request.headers.host ? request.headers.host.value : '';
  var slug = SITE_SLUG || slugForHost(host);
  if (!slug) {
    return { statusCode: 400, statusDescription: 'Bad Request' };
  }
  var file = route(request.uri);
  if (file === null) {
    return { statusCode: 404, statusDescription: 'Not Found' };
  }
  request.uri = '/sites/' + slug + '/' + file.split('/').map(encodeURIComponent).join('/');
  request.querystring = {};
  return request;
}
