// The page's router: the address's hash names the view, so a reload or a shared link lands
// on the same market. "#/" is the list of markets, "#/m/<market id>" one market live.

import { wireCopyButtons } from "./dom.js";
import { mountHome } from "./home.js";
import { mountMarket } from "./market.js";
import { takeOperatorTokenFromAddress } from "./tokens.js";

let leaveView = null;

function route() {
  const hash = location.hash || "#/";
  const market = hash.match(/^#\/m\/([^/?#]+)$/);
  if (market) return () => mountMarket(decodeURIComponent(market[1]));
  if (hash === "#/" || hash === "#") return mountHome;
  return mountNotFound;
}

function mountNotFound() {
  const view = document.getElementById("notfound-view");
  view.hidden = false;
  document.title = "Not found — gpumarket";
  return () => { view.hidden = true; };
}

function show() {
  leaveView?.();
  leaveView = route()();
  // Move focus to the new view's start, as a page load would, for keyboard and screen readers.
  if (document.activeElement && document.activeElement !== document.body) {
    document.getElementById("main").focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

wireCopyButtons(document.getElementById("home-view"));
takeOperatorTokenFromAddress();
window.addEventListener("hashchange", () => {
  takeOperatorTokenFromAddress(); // pasted into the address bar of an open page
  show();
});
show();
