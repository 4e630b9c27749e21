// Pause, resume, speed and stop: only for whoever holds the market's control token, or the
// operator token (the presenter's, good for every market).

import { api } from "./api.js";
import { byTestId, setNotice, whileBusy } from "./dom.js";
import {
  controlToken, operatorToken, saveControlToken, saveOperatorToken,
} from "./tokens.js";

const LIVE_STATES = new Set(["running", "paused"]);

export class MarketControls {
  /** `onSummary(summary)` receives the MarketSummary each successful command returns. */
  constructor(root, marketId, onSummary) {
    this.root = root;
    this.marketId = marketId;
    this.onSummary = onSummary;
    this.token = controlToken(marketId) ?? operatorToken();
    this.wire();
  }

  el(id) {
    return byTestId(id, this.root);
  }

  wire() {
    this.el("pause-button").addEventListener("click", (e) => this.run(e.currentTarget,
      () => api.control(this.marketId, "pause", this.token)));
    this.el("resume-button").addEventListener("click", (e) => this.run(e.currentTarget,
      () => api.control(this.marketId, "resume", this.token)));
    this.el("speed-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const speed = Number(this.el("speed-input").value);
      if (!(speed > 0)) {
        setNotice(this.el("control-error"), "speed: a number above 0 (simulated seconds per " +
          "wall-clock second)");
        return;
      }
      this.run(this.el("speed-submit"), () => api.setSpeed(this.marketId, speed, this.token));
    });
    // While the visitor types a speed, live updates leave the field alone.
    const speedInput = this.el("speed-input");
    speedInput.addEventListener("input", () => { speedInput.dataset.edited = "yes"; });
    this.wireStop();
    this.el("control-token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = this.el("control-token-input").value.trim();
      if (!token) {
        setNotice(this.el("control-error"), "Paste the control token you got when the " +
          "market was created (it starts with gmc_).");
        return;
      }
      this.token = token;
      saveControlToken(this.marketId, token);
      setNotice(this.el("control-error"), "");
      this.render(this.lastState, this.lastSpeed);
    });
  }

  /** Stopping cannot be undone, so it takes a second, explicit click. */
  wireStop() {
    const stop = this.el("stop-button");
    const confirmBox = this.root.querySelector(".stop-confirm");
    const ask = (asking) => {
      stop.hidden = asking;
      confirmBox.hidden = !asking;
    };
    stop.addEventListener("click", () => {
      ask(true);
      this.el("stop-cancel").focus();
    });
    this.el("stop-cancel").addEventListener("click", () => {
      ask(false);
      stop.focus();
    });
    this.el("stop-confirm").addEventListener("click", async (e) => {
      await this.run(e.currentTarget, () => api.control(this.marketId, "stop", this.token));
      ask(false);
    });
  }

  async run(button, command) {
    setNotice(this.el("control-error"), "");
    await whileBusy(button, async () => {
      try {
        const summary = await command();
        this.onSummary(summary);
        this.lastState = summary?.state ?? this.lastState;
        this.lastSpeed = summary?.speed ?? this.lastSpeed;
        delete this.el("speed-input").dataset.edited; // the field follows the market again
      } catch (error) {
        this.refused(error);
      }
    });
    this.render(this.lastState, this.lastSpeed);
    // Pause disables itself; keep keyboard focus in the controls (on Resume, say).
    if (button.disabled || button.closest("[hidden]")) {
      const next = [...this.el("control-buttons").querySelectorAll("button")]
        .find((candidate) => !candidate.disabled && !candidate.closest("[hidden]"));
      (next ?? this.el("control-token-input")).focus();
    }
  }

  refused(error) {
    if (error.status === 401 || error.status === 403) {
      // A wrong or foreign token (or an operator token from before the server restarted
      // with another): forget it, so the paste field comes back.
      if (this.token === operatorToken()) saveOperatorToken(null);
      else saveControlToken(this.marketId, null);
      this.token = null;
      setNotice(this.el("control-error"), `The control token was refused: ${error.message}`);
    } else {
      setNotice(this.el("control-error"), error.message);
    }
  }

  /** Enable what makes sense in `state`; keep the speed field unless someone is typing. */
  render(state, speed) {
    this.lastState = state;
    this.lastSpeed = speed;
    const live = LIVE_STATES.has(state);
    this.el("control-buttons").hidden = !this.token || !live;
    this.el("control-token-form").hidden = Boolean(this.token) || !live;
    if (!this.token || !live) return;
    this.el("pause-button").disabled = state !== "running";
    this.el("resume-button").disabled = state !== "paused";
    const input = this.el("speed-input");
    if (document.activeElement !== input && !input.dataset.edited) input.value = String(speed);
  }
}
