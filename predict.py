"""Read digits with a trained model: picture files, or MNIST's whole test set.

    uv run predict.py model.npz digit.png photo.jpg     # one line per picture
    uv run predict.py model.npz --data ../shared/mnist   # test accuracy, per class, confusion matrix
    uv run predict.py model.npz digit.png --json read.json

Each picture (PNG, JPEG, any size, dark ink on light paper or light on dark)
goes through gui.py's preprocessing: the ink is cropped, reduced to MNIST's
20 px box and centred by its mass. Bad input is one line and exit status 2.
"""

import sys

from cli.flags import Parser

TOP = 3  # how many readings each picture's line lists


def build_parser():
    p = Parser(prog="predict.py", description="Read digits with a model train.py saved: picture files, or MNIST's test set.")
    p.add_argument("model", metavar="MODEL", help="model file written by train.py (.npz, .safetensors or a Hub folder)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="pictures of single digits (PNG, JPEG, any size)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="instead of pictures, read MNIST's 10,000 test digits from this folder (the IDX files or mnist.npz)")
    p.add_argument("--backend", default="numpy", metavar="NAME", help="numpy, jax, cupy or auto")
    p.add_argument("--json", default=None, metavar="PATH", help="also write what was read as JSON")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.images) == bool(args.data):
        parser.error("give either IMAGE files or --data PATH (one of the two)")
    from backends import get_backend
    from cli.paths import check_no_clash, check_writable_file
    from nn.data import data_files
    from nn.serialize import load_model

    if args.json:
        inputs = [("MODEL", args.model)] + [("IMAGE", image) for image in args.images]
        inputs += [("--data", file) for file in (data_files(args.data) if args.data else [])]
        check_no_clash(inputs, [("--json", args.json)])
        check_writable_file("--json", args.json, "read.json")
    model, params = load_model(args.model)
    be = get_backend(args.backend)
    result = read_test_set(be, model, params, args.data) if args.data else read_images(be, model, params, args.images)
    if args.json:
        from nn.files import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


def read_images(be, model, params, paths):
    from cli.images import image_as_digit
    from drawing.predictor import Predictor

    predictor = Predictor(model, params, be, source="MODEL")
    digits = [image_as_digit(path) for path in paths]  # every picture checked before any is read
    rows = []
    for path, digit in zip(paths, digits):
        probabilities = predictor(digit)
        ranked = probabilities.argsort()[::-1][:TOP]
        top = ", ".join(f"{d} {probabilities[d]:.1%}" for d in ranked)
        print(f"{path}: {ranked[0]} ({probabilities[ranked[0]]:.1%})  top {TOP}: {top}")
        rows.append({"image": str(path), "digit": int(ranked[0]), "probabilities": [float(p) for p in probabilities]})
    return rows


def read_test_set(be, model, params, data):
    import numpy as np

    from nn.data import load_mnist

    mnist = load_mnist(data)
    predict, device_params = be.make_predict(model), be.tree_asarray(params)
    read = np.concatenate([
        np.argmax(be.to_host(predict(device_params, be.asarray(mnist.x_test[start : start + 10_000]))), axis=1)
        for start in range(0, len(mnist.y_test), 10_000)
    ])
    truth = mnist.y_test
    classes = model.sizes[-1]
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (truth, read), 1)
    accuracy = float(np.mean(read == truth))
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    print(f"test accuracy {accuracy:.2%} ({int((read == truth).sum()):,} of {len(truth):,} digits)")
    print("per class: " + "  ".join(f"{d} {a:.2%}" for d, a in enumerate(per_class)))
    print("confusion (rows: the true digit, columns: what the model read)")
    width = max(5, len(str(confusion.max())) + 1)
    print("true\\read" + "".join(f"{d:>{width}}" for d in range(classes)))
    for d in range(classes):
        print(f"{d:>9}" + "".join(f"{n:>{width}}" for n in confusion[d]))
    return {"test_accuracy": accuracy, "n": int(len(truth)), "per_class_accuracy": [float(a) for a in per_class],
            "confusion": confusion.tolist()}


if __name__ == "__main__":
    from backends.errors import run_front_door

    sys.exit(run_front_door(main, None, "predict.py"))
