// A figure's canvas in the page (holiwidget/explorer/surface.py).
//
// Frames arrive as whole PNGs in custom messages. Each is decoded off the main thread
// (createImageBitmap) and drawn at once; while one decodes, only the newest frame that
// arrives waits, so a burst of frames draws its last one without decoding the others.
// Mouse presses, drags, releases and wheel turns go back to the kernel in figure pixels
// (from the top left), as matplotlib events there.

function render({ model, el }) {
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d");
  el.classList.add("holiwidget-surface");
  el.appendChild(canvas);

  function fit() {  // (a new size clears the canvas: the next frame fills it)
    canvas.width = model.get("width");
    canvas.height = model.get("height");
    canvas.style.width = `${canvas.width}px`;
    canvas.style.height = `${canvas.height}px`;
  }
  function pointer() {
    canvas.style.cursor = model.get("cursor");
    canvas.title = model.get("hint");
  }
  fit();
  pointer();
  model.on("change:width change:height", fit);
  model.on("change:cursor change:hint", pointer);

  let decoding = false;
  let waiting = null;
  async function show(buffer) {
    decoding = true;
    try {
      const bitmap = await createImageBitmap(new Blob([buffer], { type: "image/png" }));
      if (bitmap.width !== canvas.width || bitmap.height !== canvas.height) {
        canvas.width = bitmap.width;  // the figure was resized (its new size follows)
        canvas.height = bitmap.height;
        canvas.style.width = `${bitmap.width}px`;
        canvas.style.height = `${bitmap.height}px`;
      }
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
    } catch (error) {
      console.warn("holiwidget: a frame could not be decoded", error);
    } finally {
      decoding = false;
      if (waiting !== null) {
        const next = waiting;
        waiting = null;
        show(next);
      }
    }
  }
  function onMessage(message, buffers) {
    if (message.type !== "frame" || !buffers || !buffers.length) return;
    if (decoding) waiting = buffers[0];
    else show(buffers[0]);
  }
  model.on("msg:custom", onMessage);

  function at(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / Math.max(box.width, 1),
      y: ((event.clientY - box.top) * canvas.height) / Math.max(box.height, 1),
    };
  }
  function send(type, event, extra) {
    model.send({ type, ...at(event), button: event.button + 1, shift: event.shiftKey, ...extra });
  }

  let pressed = false;
  let moved = null;
  function onDown(event) {
    pressed = model.get("drag");  // its moves and release matter only for a drag
    send("press", event, { dblclick: event.detail >= 2 });
  }
  function onMove(event) {
    if (!pressed) return;
    if (moved === null) requestAnimationFrame(() => {
      if (moved !== null) send("move", moved, {});
      moved = null;
    });
    moved = event;
  }
  function onUp(event) {
    if (!pressed) return;
    pressed = false;
    moved = null;  // the release carries the last position
    send("release", event, {});
  }
  function onWheel(event) {
    if (!model.get("wheel")) return;
    event.preventDefault();
    send("scroll", event, { step: event.deltaY < 0 ? 1 : -1 });
  }
  canvas.addEventListener("mousedown", onDown);
  canvas.addEventListener("wheel", onWheel, { passive: false });
  window.addEventListener("mousemove", onMove);
  window.addEventListener("mouseup", onUp);

  model.send({ type: "ready" });
  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:width change:height", fit);
    model.off("change:cursor change:hint", pointer);
    window.removeEventListener("mousemove", onMove);
    window.removeEventListener("mouseup", onUp);
  };
}

export default { render };
