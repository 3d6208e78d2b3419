// A figure's canvas in the page (holiwidget/explorer/surface.py).
//
// Frames arrive as PNGs in custom messages: the whole canvas, or the box of pixels that
// changed, drawn at (x, y). Each is decoded off the main thread (ImageDecoder where the page
// has it, else createImageBitmap) and drawn as soon as it and the frames before it are. A
// whole frame makes the frames waiting before it moot, so a burst of whole frames draws its
// last one without decoding the others.
// Mouse presses, drags, releases and wheel turns go back to the kernel in figure pixels
// (from the top left), as matplotlib events there.

// A decoded PNG (a VideoFrame or an ImageBitmap), or null if it could not be decoded.
async function decode(buffer) {
  try {
    if (typeof ImageDecoder !== "undefined") {  // no copy through the browser's blob store
      const decoder = new ImageDecoder({ data: buffer, type: "image/png" });
      try {
        return (await decoder.decode()).image;
      } finally {
        decoder.close();
      }
    }
    return await createImageBitmap(new Blob([buffer], { type: "image/png" }));
  } catch (error) {
    console.warn("holiwidget: a frame could not be decoded", error);
    return null;
  }
}

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

  let waiting = [];  // frames not drawn yet, in order
  let drawing = false;
  function draw(frame, image) {
    if (frame.whole) {
      const width = image.displayWidth ?? image.width;
      const height = image.displayHeight ?? image.height;
      if (width !== canvas.width || height !== canvas.height) {
        canvas.width = width;  // the figure was resized (its new size follows)
        canvas.height = height;
        canvas.style.width = `${width}px`;
        canvas.style.height = `${height}px`;
      }
    }
    context.drawImage(image, frame.x, frame.y);
  }
  async function drawWaiting() {
    drawing = true;
    while (waiting.length) {
      const frames = waiting;
      waiting = [];
      const images = await Promise.all(frames.map((frame) => decode(frame.buffer)));
      const moot = waiting.some((frame) => frame.whole);  // a whole frame came meanwhile
      frames.forEach((frame, i) => {
        if (images[i] === null) return;
        if (!moot) draw(frame, images[i]);
        images[i].close();
      });
    }
    drawing = false;
  }
  function onMessage(message, buffers) {
    if (message.type !== "frame" || !buffers || !buffers.length) return;
    const frame = { buffer: buffers[0], x: message.x ?? 0, y: message.y ?? 0,
                    whole: message.whole ?? true };
    if (frame.whole) waiting = [frame];
    else waiting.push(frame);
    if (!drawing) drawWaiting();
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
