#!/usr/bin/env bash
# Download one documentation site from a Debian package and extract its HTML
# pages into a folder that `ragserve ingest` reads. These are the held-out
# sites of eval/ (see eval/README.md): the question sets there were written
# against exactly these package versions.
#
# Usage: scripts/fetch_debian_docs.sh SITE [DEST]
#   SITE  celery | git
#   DEST  folder to fill (default tmp/debian-docs/SITE). Idempotent: a folder
#         that already holds an extraction is left as it is (delete it to refetch);
#         a new one is staged elsewhere and moved into place only when complete.
# Prints the folder and, on the last line, the --base-url to index it under, e.g.
#   ragserve ingest "$(scripts/fetch_debian_docs.sh celery | head -1)" \
#     --base-url https://docs.celeryq.dev/en/v5.2.6/
#
# Needs apt-get (Debian/Ubuntu, after `apt-get update`) and dpkg-deb; nothing
# is installed. The pinned version is fetched when the mirror still has it,
# otherwise the current one, with a warning (questions may then drift).
#
# Sites (package, pinned version, generator, licence of the docs, public base URL):
#   celery  python-celery-doc 5.2.6-5   Sphinx 5.3 (docutils 0.19)  CC-BY-SA-4.0
#           https://docs.celeryq.dev/en/v5.2.6/
#           kept: every page of html/ but _modules/ (highlighted source code),
#           _sources/, _static/, genindex, search and py-modindex (no prose).
#   git     git-doc 1:2.39.5-0+deb12u3  AsciiDoc 10.2.0             GPL-2.0
#           https://mirrors.edge.kernel.org/pub/software/scm/git/docs/
#           (the Git project's published AsciiDoc HTML: same file names and
#           `_section` anchors; it tracks the newest Git release, not 2.39)
#           kept: the *.html pages (the *.txt AsciiDoc sources beside them are
#           dropped so the folder does not index every page twice).
set -euo pipefail

site=${1:-}
case "$site" in
  celery)
    package=python-celery-doc
    pinned=5.2.6-5
    html_root=usr/share/doc/python-celery-doc/html
    base_url=https://docs.celeryq.dev/en/v5.2.6/
    ;;
  git)
    package=git-doc
    pinned=1:2.39.5-0+deb12u3
    html_root=usr/share/doc/git-doc
    base_url=https://mirrors.edge.kernel.org/pub/software/scm/git/docs/
    ;;
  *)
    echo "usage: $0 celery|git [DEST]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
dest=${2:-tmp/debian-docs/$site}

if [[ -f "$dest/.debian-package" ]] && [[ -n "$(find "$dest" -name '*.html' -print -quit)" ]]; then
  echo "$dest"
  echo "already extracted: $(cat "$dest/.debian-package")" >&2
  echo "$base_url"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  if ! apt-get download "$package=$pinned" >/dev/null 2>&1; then
    echo "warning: $package=$pinned is gone from the mirror; fetching the current version" >&2
    apt-get download "$package" >/dev/null
  fi
)
deb=$(ls "$work"/*.deb)
version=$(dpkg-deb -f "$deb" Version)
dpkg-deb -x "$deb" "$work/root"

staged="$work/site"
mkdir -p "$staged"
(
  cd "$work/root/$html_root"
  find . -name '*.html' \
    -not -path './_modules/*' -not -path './_sources/*' -not -path './_static/*' \
    -not -name genindex.html -not -name search.html -not -name py-modindex.html \
    -print0 | tar --null -T - -cf - | tar -xf - -C "$staged"
)
echo "$package $version $(sha256sum "$deb" | cut -d' ' -f1)" >"$staged/.debian-package"

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$staged" "$dest"
echo "$dest"
echo "extracted $(find "$dest" -name '*.html' | wc -l) pages of $package $version" >&2
echo "$base_url"
