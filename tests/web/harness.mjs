// Shared by the browser drivers (cdp.mjs, marionette.mjs) and the scripts that take flags
// (browser-check.mjs, mock-server.mjs).

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `--name value` (or a bare `--name`, which reads as true) from argv; `dflt` when absent. */
export function cliOption(argv = process.argv.slice(2)) {
  return (name, dflt) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return dflt;
    const v = argv[i + 1];
    return v === undefined || v.startsWith("--") ? true : v;
  };
}

/** Adds `state()` (window.auralis as plain data, or null before the page has set it up) and
 * `waitFor(pred, ms, label)` to a page whose `evaluate` runs an expression in it. */
export function withStateHelpers(page) {
  page.state = () => page.evaluate("window.auralis ? JSON.parse(JSON.stringify(window.auralis)) : null");
  page.waitFor = async (pred, ms, label = "condition") => {
    const until = Date.now() + ms;
    let a = null;
    while (Date.now() < until) {
      a = await page.state();
      if (a && pred(a)) return a;
      await sleep(100);
    }
    console.log(`  (timed out waiting for ${label}: state=${a && a.state} note=${a && a.note})`);
    return a || {};
  };
  return page;
}
