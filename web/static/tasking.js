// Tasking (docs/tasking.md): poll /api/tasking and update the list in place. Only text that
// changed is rewritten and only items out of place are moved, so nothing flickers, the page
// never reloads and the scroll position stays. The figures' wording matches tasking.html.
(() => {
  const root = document.getElementById("tasking");
  if (!root) return;
  const list = document.getElementById("tasking-list");
  const empty = document.getElementById("tasking-empty");
  const status = document.getElementById("tasking-status");
  const template = document.getElementById("tasking-item-template");
  // An officer's page may also order the list by distance from their radio's last position.
  const nearest = document.getElementById("tasking-nearest");
  const positionTime = document.getElementById("tasking-position-time");
  const url = root.dataset.apiUrl;
  const pollMs = Math.max(Number.parseInt(root.dataset.pollMs, 10) || 30000, 100);
  let timer = null;
  let busy = false;
  let latest = null; // the items of the last answer, in rank order

  // Whole minutes as "40 min", "5 h 40 min" or "3 days 2 h" (tracker.plan.tasking.duration_text).
  const duration = (minutes) => {
    const whole = Math.floor(minutes);
    if (whole < 60) return `${whole} min`;
    let hours = Math.floor(whole / 60);
    const rest = whole % 60;
    if (hours < 48) return rest ? `${hours} h ${rest} min` : `${hours} h`;
    const days = Math.floor(hours / 24);
    hours %= 24;
    return hours ? `${days} days ${hours} h` : `${days} days`;
  };

  // "850 m" or "1.2 km", tenths rounded half up (tracker.plan.tasking.distance_text).
  const distance = (metres) => {
    if (metres < 1000) return `${metres} m`;
    const tenths = Math.floor((metres + 50) / 100);
    return `${Math.floor(tenths / 10)}.${tenths % 10} km`;
  };
  const hasDistance = (item) => item.distance_m !== undefined && item.distance_m !== null;

  const texts = (item) => ({
    rank: String(item.rank),
    hotspot_name: item.hotspot_name,
    hotspot_id: item.hotspot_id,
    window: item.window_open ? "Window open" : "Window closed",
    short:
      item.target_minutes === null || item.target_minutes <= 0
        ? "No target"
        : item.short_minutes > 0
          ? `${Math.ceil(item.short_minutes)} min short`
          : "Target met",
    since:
      item.minutes_since_presence === null
        ? "No presence on record"
        : item.minutes_since_presence < 1
          ? "Presence now"
          : `${duration(item.minutes_since_presence)} since presence`,
    distance: hasDistance(item) ? `${distance(item.distance_m)} away` : "",
    reason: item.reason,
  });

  const setText = (element, text) => {
    if (element.textContent !== text) element.textContent = text;
  };

  const fill = (li, item) => {
    // Writing an attribute, even unchanged, is a DOM change: only what differs is written.
    if (li.dataset.hotspotId !== item.hotspot_id) li.dataset.hotspotId = item.hotspot_id;
    for (const [name, text] of Object.entries(texts(item))) {
      setText(li.querySelector(`[data-field="${name}"]`), text);
    }
    const overMax = li.querySelector('[data-field="over_max"]');
    if (overMax.hidden === item.over_max) overMax.hidden = !item.over_max;
    const away = li.querySelector('[data-field="distance"]');
    if (away.hidden === hasDistance(item)) away.hidden = !hasDistance(item);
    li.classList.toggle("over-max", item.over_max);
    li.classList.toggle("window-open", item.window_open && !item.over_max);
  };

  const nearestFirst = () => nearest !== null && nearest.getAttribute("aria-pressed") === "true";
  const distanceOf = (item) => (hasDistance(item) ? item.distance_m : Number.POSITIVE_INFINITY);
  // Array sort is stable: at equal distance the rank order stays.
  const ordered = (items) =>
    nearestFirst() ? items.slice().sort((a, b) => distanceOf(a) - distanceOf(b)) : items;

  const showPosition = (items) => {
    if (nearest === null) return;
    const located = items.find(hasDistance);
    const box = nearest.parentElement;
    if (box.hidden === Boolean(located)) box.hidden = !located;
    // The time as the server wrote it, in the operation's zone: HH:MM of the ISO text.
    if (located) setText(positionTime, located.position_time.slice(11, 16));
  };

  const render = (answer) => {
    latest = answer;
    showPosition(answer);
    const items = ordered(answer);
    const shown = new Map(Array.from(list.children, (li) => [li.dataset.hotspotId, li]));
    items.forEach((item, index) => {
      let li = shown.get(item.hotspot_id);
      shown.delete(item.hotspot_id);
      if (!li) li = template.content.firstElementChild.cloneNode(true);
      fill(li, item);
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    });
    for (const li of shown.values()) li.remove();
    if (empty.hidden !== items.length > 0) empty.hidden = items.length > 0;
  };

  const say = (text, problem) => {
    setText(status, text);
    status.classList.toggle("stale", problem);
  };

  const refresh = async () => {
    clearTimeout(timer);
    if (busy) return; // the request in flight schedules the next one
    busy = true;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        say("signed out: sign in again to see the current list", true);
        return; // polling again would only be refused
      }
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      render(await response.json());
      const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      say(`updated ${time}`, false);
    } catch (error) {
      say(`not updated (${error.message}); the list may be out of date`, true);
    } finally {
      busy = false;
    }
    if (document.visibilityState !== "hidden") timer = setTimeout(refresh, pollMs);
  };

  if (nearest !== null) {
    nearest.addEventListener("click", () => {
      nearest.setAttribute("aria-pressed", String(!nearestFirst()));
      if (latest) render(latest);
      else refresh();
    });
  }

  // A phone in a pocket need not poll; a page shown again is brought up to date at once.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(timer);
  });
  timer = setTimeout(refresh, pollMs);
})();
