// The browser runtime: who the visitor is, which experiments of the site run on this page
// (and after each SPA route change), which variant the visitor sees in each, redirects,
// anti-flicker, exposures and goals, and window.__sk (the SplitKit contract).

import { assign } from './assign.js';
import { applyChanges } from './changes.js';
import { local, session, uuid } from './storage.js';
import { compilePattern } from './urlglob.js';

const VISITOR_KEY = 'sk_v'; // localStorage (cookie fallback): the visitor id
const OPT_OUT_KEY = 'sk_o'; // localStorage (cookie fallback): "1" once __sk.optOut() ran
const SESSION_KEY = 'sk_s'; // sessionStorage: the session id
const EXPOSED_KEY = 'sk_x'; // sessionStorage: ids of the experiments exposed, " "-separated
const REDIRECT_KEY = 'sk_r'; // sessionStorage: ids of the experiments that redirected here
const PREVIEW_PARAM = 'sk_preview';
/** How long the page stays hidden at most while a preview config is fetched. */
export const PREVIEW_WAIT_MS = 3000;
/** The most events in one request (MAX_EVENTS_PER_BATCH on the server). */
export const MAX_BATCH = 500;
/** How long the first queued event waits for others before its batch is sent. */
export const FLUSH_MS = 1000;

/** 'tablet', 'mobile' or 'desktop', from the user agent, then the screen width. */
export function deviceType(userAgent, screenWidth, maxTouchPoints) {
  // Tablets: iPads, Android without "Mobi" anywhere, and iPadOS Safari, which asks for
  // desktop sites with a Mac user agent (a Mac has no touch screen). Phones: "Mobi",
  // iPhone, iPod, and phones asking for desktop sites (a phone-sized screen).
  return /iPad|^(?!.*Mobi).*Android/.test(userAgent) || (maxTouchPoints > 1 && /Macintosh/.test(userAgent))
    ? 'tablet'
    : /Mobi|iPhone|iPod/.test(userAgent) || (screenWidth > 0 && screenWidth < 768)
      ? 'mobile'
      : 'desktop';
}

/**
 * Where a redirect variant sends the visitor from `here` (location, or a URL), or null
 * when they are already there (the hash aside) or the target is not an http(s) URL. The
 * current query string and hash are kept unless `redirectUrl` has its own.
 */
export function redirectTarget(redirectUrl, here) {
  const target = new URL(redirectUrl, here);
  target.search ||= here.search;
  target.hash ||= here.hash;
  return /^https?:$/.test(target.protocol) && target.href.split('#')[0] !== here.href.split('#')[0]
    ? target.href
    : null;
}

/** Whether `id` is one of the " "-separated ids of `list`. */
export const listed = (list, id) => list.split(' ').includes(id);

/** Run the site config `cfg` on this page and publish window.__sk. Never throws. */
export function boot(cfg) {
  if (window.__sk) return; // the snippet is on the page twice
  // ?sk_preview=<variant id of this config | preview token>: that variant, and nothing
  // sent ("" is no preview). A token's experiment comes from the edge (see below).
  let previewId = new URLSearchParams(location.search).get(PREVIEW_PARAM);
  const preview = !!previewId;
  const undos = []; // the undo of each applyChanges of the current pathname
  let queue = [];
  let optedOut = local(OPT_OUT_KEY);
  let timer;
  let failed; // an error event was queued on this page view
  let pathname; // the pathname the experiments were last evaluated for
  let exposed = ''; // EXPOSED_KEY, kept here too for when sessionStorage is unavailable
  const rootStyle = document.documentElement.style; // anti-flicker: its opacity
  // The experiments that redirected to this page: they run on every page of this page
  // view and do not redirect again (the loop guard).
  const landed = session(REDIRECT_KEY) || '';
  session(REDIRECT_KEY, '');

  const sk = (window.__sk = {
    v: local(VISITOR_KEY, local(VISITOR_KEY) || uuid()),
    s: session(SESSION_KEY, session(SESSION_KEY) || uuid()),
    dt: deviceType(navigator.userAgent, screen.width, navigator.maxTouchPoints),
    sk: cfg?.sk,
    a: [],
    preview,
    getVariant(experimentId) {
      const entry = sk.a.find((candidate) => candidate.eid === experimentId);
      return entry ? { variantId: entry.vid, isControl: entry.ic } : null;
    },
    // A goal event for each experiment on the page with a custom goal named `name`, else
    // one custom event of no experiment. `value`: a number, else left out.
    track(name, value) {
      value = typeof value === 'number' && value * value <= 1e30 ? value : undefined; // |value| <= 1e15
      goal('custom', (g) => g.name === name, value) ||
        send('custom', 0, { name: ('' + name).slice(0, 256), value });
    },
    optOut() {
      optedOut = queue = [];
      local(OPT_OUT_KEY, 1);
    },
  });

  // Queue an event (BrowserEvent in src/edge/ingest/schema.py), unless this is a
  // preview or the visitor opted out; truthy if queued. `entry` (an item of sk.a, or
  // nothing) gives its experiment and variant, `fields` any of goal_id, name, value.
  // Fields that are undefined are left out of the JSON (the server's default is "").
  function send(type, entry, fields) {
    if (!preview && !optedOut) {
      timer ||= setTimeout(flush, FLUSH_MS);
      return queue.push({
        event_id: uuid(),
        type,
        visitor_id: sk.v,
        ts: Date.now(),
        session_id: sk.s,
        pathname: location.pathname.slice(0, 2048),
        device: sk.dt,
        experiment_id: entry?.eid,
        variant_id: entry?.vid,
        ...fields,
      });
    }
  }

  // Send the queue in requests of at most MAX_BATCH events each, with
  // navigator.sendBeacon, else (no beacon, or refused: over its 64 KB quota) fetch with
  // keepalive. A string body goes as text/plain;charset=UTF-8 with both: a CORS "simple
  // request", no preflight. Never throws, so it needs no guard as a listener.
  // (A timer still pending then finds an empty queue.)
  function flush() {
    timer = 0;
    while (queue.length) {
      const body = JSON.stringify({ public_key: sk.sk, events: queue.splice(0, MAX_BATCH) });
      try {
        navigator.sendBeacon?.(url, body) || fetch(url, { method: 'POST', body, keepalive: true }).catch(() => {});
      } catch {
        // the events are lost
      }
    }
  }

  // A goal event for each goal of type `type`, of each experiment on the page, that
  // passes `test`; truthy if any did. Never throws.
  function goal(type, test, value) {
    let hit;
    for (const entry of sk.a) {
      for (const g of entry.gs) {
        try {
          if (g.type === type && test(g)) hit = send('goal', entry, { goal_id: g.id, value }) || 1;
        } catch {
          // a bad selector or pattern: that goal only
        }
      }
    }
    return hit;
  }

  let hidden;
  const show = () => hidden && (hidden = rootStyle.opacity = ''); // html untouched unless hidden

  // Evaluate the experiments for the current pathname, unless it is the one they were
  // last evaluated for: undo the changes of the previous evaluation, then redirect, or
  // apply (and expose) the experiments of this pathname, and send its pageview goals.
  // On the first run, hide the page until the changes are applied.
  function route(first) {
    const current = location.pathname;
    if (current === pathname) return;
    pathname = current;
    undos.splice(0).map((undo) => undo());
    const entries = (sk.a = []);
    let target;
    let waiting = 1;
    const ready = () => --waiting || show();
    for (const experiment of cfg.experiments) {
      try {
        const pinned = listed(landed, experiment.id);
        if (pinned || compilePattern(experiment.url_pattern).test(current)) {
          // The previewed variant if it belongs to this experiment, else the assigned one
          // (none outside the coverage).
          const variants = experiment.variants;
          const variant =
            variants.find((candidate) => candidate.id === previewId) ||
            variants[
              assign(
                experiment.id,
                sk.v,
                variants.map((candidate) => candidate.weight),
                experiment.coverage,
              )
            ];
          if (variant) {
            entries.push({
              eid: experiment.id,
              vid: variant.id,
              ic: variant.control,
              gs: experiment.goals,
              ch: variant.changes,
            });
            // The destination page sends the exposure (see landed); this experiment
            // joins the loop guard.
            if (!target && !pinned && variant.redirect_url) {
              target = redirectTarget(variant.redirect_url, location);
              target && !preview && session(REDIRECT_KEY, landed + ' ' + experiment.id);
            }
          }
        }
      } catch {
        // one broken experiment never stops the others
      }
    }
    if (first && (target || entries.some((entry) => entry.ch.length))) {
      // Hidden through the CSSOM (no <style>, which a Content-Security-Policy may block):
      // the elements and their text are there, nothing is painted.
      hidden = rootStyle.opacity = '0';
      setTimeout(show, cfg.anti_flicker_ms);
    }
    if (target) return location.replace(target);
    for (const entry of entries) {
      // The first exposure of each experiment in the session.
      exposed = session(EXPOSED_KEY) || exposed;
      // An experiment without goals has nothing to count: a deployed one (a promoted winner,
      // served to everyone, its goals withdrawn) changes the page and sends no exposure.
      !entry.gs.length ||
        listed(exposed, entry.eid) ||
        (send('exposure', entry) && session(EXPOSED_KEY, (exposed += ' ' + entry.eid)));
      if (entry.ch.length) {
        waiting++;
        // A change that throws: one error event per page view.
        const report = (error) =>
          failed ||= send('error', entry, { name: ('' + error.message).slice(0, 256) }) || 1;
        undos.push(applyChanges(entry.ch, report, ready));
      }
    }
    ready();
    goal('pageview', (g) => compilePattern(g.url_pattern).test(current));
  }

  let url;
  try {
    // A classic script, so currentScript is this one: events go to the edge that served
    // it (the page's own origin for an inlined snippet), previews come from it.
    const edge = document.currentScript?.src || location.href;
    url = new URL('/v1/collect', edge);
    if (preview && !cfg.experiments.some((e) => e.variants.some((v) => v.id === previewId))) {
      // A preview token: the page stays hidden until its experiment (any status but
      // archived; drafts are in no snippet) is fetched and applied, or PREVIEW_WAIT_MS.
      // A wrong token or a failed fetch previews nothing: the site's own config runs.
      hidden = rootStyle.opacity = '0';
      setTimeout(show, PREVIEW_WAIT_MS);
      fetch(new URL(`/s/${cfg.sk}/preview/${encodeURIComponent(previewId)}.json`, edge))
        .then((response) => response.json())
        .then(({ variant, experiment }) => {
          if (experiment) {
            cfg.experiments = [experiment, ...cfg.experiments.filter((e) => e.id !== experiment.id)];
            previewId = variant;
          }
        })
        .catch(() => {})
        .then(() => {
          pathname = 0; // evaluated anew, even after an SPA route change meanwhile
          route(true);
        });
    } else {
      // (After a redirect too: the page is going, and nothing is queued.)
      route(true);
    }
    // route() throws only on a broken config, which the first run has ruled out; still,
    // history methods must never throw because of it.
    const onRoute = () => {
      try {
        route();
      } catch {
        // never break the page
      }
    };
    for (const name of ['pushState', 'replaceState']) {
      const original = history[name];
      history[name] = function (...args) {
        try {
          return original.apply(this, args);
        } finally {
          onRoute();
        }
      };
    }
    addEventListener('popstate', onRoute);
    document.addEventListener('click', (event) => goal('click', (g) => g.selector && event.target.closest(g.selector)), true);
    addEventListener('pagehide', flush);
    document.addEventListener('visibilitychange', () => document.hidden && flush());
  } catch {
    // a broken config: what ran stays, the page is never broken
  }
}
