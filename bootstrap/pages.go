package bootstrap

import (
	"context"
	"iter"
)

// pages yields, in order, every item of a list call that pages with a
// token: page returns the items at token ("" asks for the first page) and
// the next page's token ("" after the last page), as the Yandex Cloud
// List methods (next_page_token) and API Gateway v2's Get* calls
// (NextToken) do. An error is yielded once, with T's zero value, and ends
// the sequence; breaking out of the loop stops asking for pages.
func pages[T any](ctx context.Context, page func(ctx context.Context, token string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		token := ""
		for {
			items, next, err := page(ctx, token)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			token = next
		}
	}
}

// sdkPages yields, in order, every item of an AWS SDK paginator's pages:
// more and next are the paginator's HasMorePages and NextPage, items picks
// a page's list. Errors end the sequence as in pages.
func sdkPages[O, F, T any](ctx context.Context, more func() bool, next func(context.Context, ...F) (O, error), items func(O) []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for more() {
			page, err := next(ctx)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items(page) {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// nilIfEmpty is a page token as the AWS SDK takes it: nil for the first
// page.
func nilIfEmpty(token string) *string {
	if token == "" {
		return nil
	}
	return &token
}
